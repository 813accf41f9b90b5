package Frames;
# The test side of the codec: RequestFrame encoding and ResponseFrame
# decoding (the shim does the opposite), on Proto's field table.
use strict;
use warnings;
use Exporter 'import';
our @EXPORT_OK = qw(encode_request decode_response request_bytes);
use Bridge::Runner::Proto;

sub _v { Bridge::Runner::Proto::_varint(shift) }
sub _ld { my ($n, $v) = @_; _v($n << 3 | 2) . _v(length $v) . $v }

# encode_request({head => {request_id, vars => [[k, v]...], url_scheme, content_length}, body, end})
sub encode_request {
    my $f   = shift;
    my $out = '';
    if (my $h = $f->{head}) {
        my $m = '';
        $m .= _ld(1, $h->{request_id}) if length($h->{request_id} // '');
        $m .= _ld(2, _ld(1, $_->[0]) . _ld(2, $_->[1])) for @{ $h->{vars} || [] };
        $m .= _ld(3, $h->{url_scheme}) if length($h->{url_scheme} // '');
        $m .= _v(4 << 3) . _v($h->{content_length}) if $h->{content_length};
        $out .= _ld(1, $m);
    }
    $out .= _ld(2, $f->{body}) if length($f->{body} // '');
    $out .= "\x18\x01" if $f->{end};
    return $out;
}

# A GET (or any body-less request) as one frame's bytes.
sub request_bytes {
    my (%r) = @_;
    my $path = $r{path} // '/';
    my @vars = (
        [ REQUEST_METHOD => $r{method} // 'GET' ], [ SCRIPT_NAME => '' ], [ PATH_INFO => $path ],
        [ QUERY_STRING => $r{query} // '' ], [ REQUEST_URI => $path ], [ SERVER_NAME => 'localhost' ],
        [ SERVER_PORT => '80' ], [ SERVER_PROTOCOL => 'HTTP/1.1' ],
    );
    my $body = $r{body} // '';
    push @vars, [ CONTENT_LENGTH => length $body ] if length $body;
    return encode_request({
        head => { request_id => $r{rid} // 'r', vars => \@vars, url_scheme => 'http', content_length => length $body },
        body => $body,
        end  => 1,
    });
}

sub decode_response {
    my $bytes = shift;
    my %f;
    Bridge::Runner::Proto::_each_field(\$bytes, sub {
        my ($n, $v) = @_;
        if ($n == 1) {
            my %h = (headers => []);
            Bridge::Runner::Proto::_each_field(\$v, sub {
                my ($n, $v) = @_;
                if    ($n == 1) { $h{status} = $v }
                elsif ($n == 2) { $h{reason} = $v }
                elsif ($n == 3) {
                    my @p = ('', '');
                    Bridge::Runner::Proto::_each_field(\$v, sub { $p[ $_[0] - 1 ] = $_[1] });
                    push @{ $h{headers} }, @p;
                }
            });
            $f{head} = \%h;
        }
        elsif ($n == 2) { $f{body} = $v }
        elsif ($n == 3) {
            my %file;
            Bridge::Runner::Proto::_each_field(\$v, sub { $file{ (qw(x path offset length))[ $_[0] ] } = $_[1] });
            $f{file} = \%file;
        }
        elsif ($n == 4) {
            my %e;
            Bridge::Runner::Proto::_each_field(\$v, sub { $e{ (qw(x kind message traceback))[ $_[0] ] } = $_[1] });
            $f{error} = \%e;
        }
        elsif ($n == 5) { $f{end}   = $v }
        elsif ($n == 6) { $f{abort} = $v }
        elsif ($n == 7) { $f{retire} = $v }
    });
    return \%f;
}

1;
