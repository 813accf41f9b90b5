package FakeSlot;
# A slot without gRPC for the PSGI-layer tests: request frames from a list,
# response frames collected. cancel_after => N makes the N+1th send fail, as
# a cancelled stream does.
use strict;
use warnings;
use Exporter 'import';
our @EXPORT_OK = qw(request_frames response_of);

sub new {
    my ($class, %a) = @_;
    return bless { frames => $a{frames} || [], sent => [], cancel_after => $a{cancel_after} }, $class;
}

sub next_frame {
    my $self = shift;
    return shift @{ $self->{frames} };
}

sub send {
    my ($self, $f) = @_;
    return 0 if $self->{cancelled};
    if (defined $self->{cancel_after} && @{ $self->{sent} } >= $self->{cancel_after}) {
        $self->{cancelled} = 1;
        return 0;
    }
    die "empty ResponseFrame sent\n" unless $f->{head} || $f->{file} || $f->{error} || $f->{end} || length($f->{body} // '');
    die "empty body field sent\n" if exists $f->{body} && !length $f->{body};
    # Through the real codec, so tests see what Go would see.
    require Bridge::Runner::Proto;
    my $bytes = Bridge::Runner::Proto::encode_response_frame($f);
    push @{ $self->{sent} }, { %$f, _bytes => length $bytes };
    return 1;
}

sub cancel { $_[0]{cancelled} = 1 }
sub sent   { @{ $_[0]{sent} } }

# Frames for one request, as Go's front would send them (nginx-style vars).
# %r: method, path (raw, undecoded), query, headers => [name => value, ...],
# body, chunks => [..] (split the body over several frames), scheme,
# streamed (content_length -1), rid.
sub request_frames {
    my %r      = @_;
    my $method = $r{method} // 'GET';
    my $path   = $r{path} // '/';
    my $query  = $r{query} // '';
    (my $decoded = $path) =~ s/%([0-9A-Fa-f]{2})/chr hex $1/ge;
    my @vars = (
        [ REQUEST_METHOD  => $method ],
        [ REQUEST_URI     => $path . (length $query ? "?$query" : '') ],
        [ SCRIPT_NAME     => '' ],
        [ PATH_INFO       => $decoded ],
        [ QUERY_STRING    => $query ],
        [ SERVER_NAME     => $r{server_name} // '127.0.0.1' ],
        [ SERVER_PORT     => $r{server_port} // '8080' ],
        [ SERVER_PROTOCOL => $r{protocol} // 'HTTP/1.1' ],
        [ REMOTE_ADDR     => '127.0.0.1' ],
    );
    my $body = $r{body} // '';
    my %merged;
    my @order;
    my @h = @{ $r{headers} || [] };
    while (my ($k, $v) = splice @h, 0, 2) {
        (my $name = uc $k) =~ tr/-/_/;
        if ($name eq 'CONTENT_TYPE' || $name eq 'CONTENT_LENGTH') {
            push @vars, [ $name, $v ] if length $v;
            next;
        }
        $name = "HTTP_$name";
        push @order, $name unless exists $merged{$name};
        $merged{$name} = exists $merged{$name} ? $merged{$name} . ($name eq 'HTTP_COOKIE' ? '; ' : ', ') . $v : $v;
    }
    push @vars, [ CONTENT_LENGTH => length $body ] if length $body && !grep { $_->[0] eq 'CONTENT_LENGTH' } @vars;
    push @vars, [ $_, $merged{$_} ] for @order;
    my $head = {
        request_id     => $r{rid} // 'rid-1',
        vars           => \@vars,
        url_scheme     => $r{scheme} // 'http',
        content_length => $r{streamed} ? -1 : length $body,
    };
    my @chunks = $r{chunks} ? @{ $r{chunks} } : (length $body ? ($body) : ());
    return ({ head => $head, body => '', end => 1 }) unless @chunks;
    my @frames = ({ head => $head, body => shift(@chunks), end => 0 });
    push @frames, { body => $_, end => 0 } for @chunks;
    push @frames, { body => '', end => 1 };
    return @frames;
}

# The response as Go would assemble it from the frames.
sub response_of {
    my @frames = @_;
    my %r = (status => undef, headers => [], body => '', frames => scalar @frames);
    for my $f (@frames) {
        if ($f->{head}) {
            die "second head" if defined $r{status};
            $r{status}  = $f->{head}{status};
            $r{reason}  = $f->{head}{reason};
            $r{headers} = [ map { @$_ } @{ $f->{head}{headers} } ];
        }
        die "body before head" if defined $f->{body} && length $f->{body} && !defined $r{status};
        die "empty body field" if defined $f->{body} && exists $f->{body} && !length $f->{body};
        $r{body} .= $f->{body} if defined $f->{body};
        $r{file}  = $f->{file}  if $f->{file};
        $r{error} = $f->{error} if $f->{error};
        $r{end}   = 1           if $f->{end};
        $r{abort} = 1           if $f->{abort};
    }
    return \%r;
}

sub header {
    my ($r, $name) = @_;
    my @h = @{ $r->{headers} };
    my @v;
    while (my ($k, $v) = splice @h, 0, 2) { push @v, $v if lc $k eq lc $name }
    return wantarray ? @v : $v[0];
}

1;
