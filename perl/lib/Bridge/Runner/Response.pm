package Bridge::Runner::Response;
# One PSGI response turned into ResponseFrames on a slot: deferred head,
# Content-Length rules, HEAD/204/304, file bodies, and the streaming writer.
# Modelled on Plack::Handler::CGI's _handle_response and Starman's
# _finalize_response, with frames instead of bytes on a socket.
#
# The slot is any object with send(\%frame) (false once the stream is
# gone); nothing here knows about gRPC.
use strict;
use warnings;

use Fcntl ();
use File::Spec ();
use Scalar::Util ();
use overload ();
use Plack::Util ();
use Bridge::Runner::Headers qw(check_status check_headers reason_phrase);
use Bridge::Runner::Log;

# Body frames stay at or below 1 MiB: Go's gRPC client takes 4 MiB messages
# at most, and bigger frames would not make anything faster (docs/design.md,
# "The wire contract").
our $MAX_CHUNK = 1 << 20;

# A response error with a kind for Error.kind ("protocol", "app", ...).
sub error { die Bridge::Runner::Error->new(@_) }

# Fields (absent ones are false; one Response per request, so only what
# every request needs is set here):
#   slot, env (psgix.harakiri.commit is read at the end), is_head;
#   code, reason, headers: from set_head;
#   length: the Content-Length the app declared (or we added), left: bytes
#   still allowed by it; no_body: HEAD, 204, 304 (nothing on the wire);
#   head_sent, ended, overrun; gone: the stream was cancelled, nobody to
#   send to; body: a handle body, closed exactly once; closed;
#   keep_open: a File frame went out, close when Go is done.
sub new {
    my ($class, %a) = @_;
    return bless { slot => $a{slot}, env => $a{env}, is_head => $a{is_head} ? 1 : 0, head_sent => 0, ended => 0, gone => 0 },
      $class;
}

sub head_sent { $_[0]{head_sent} }
sub ended     { $_[0]{ended} }
sub gone      { $_[0]{gone} }
sub started   { defined $_[0]{code} }
sub keep_open { $_[0]{keep_open} ? 1 : 0 }

# Status and headers from the app (P12, P13, G9-G14). Dies on invalid ones.
sub set_head {
    my ($self, $status, $headers) = @_;
    # The usual status as a plain string or number: no eval needed.
    my $code = defined $status && !ref $status && $status =~ /\A[2-9][0-9][0-9]\z/ ? $status + 0 : eval { check_status($status) };
    error(protocol => $@) unless defined $code;
    my ($pairs, $length, $warnings) = eval { check_headers($headers, $code) };
    error(protocol => $@) unless $pairs;
    Bridge::Runner::Log::log(warn => $_) for @$warnings;
    @$self{qw(code reason headers length left)} = ($code, reason_phrase($code), $pairs, $length, $length);
    $self->{no_body} = ($self->{is_head} || $code == 204 || $code == 304) ? 1 : 0;
    return $self;
}

# -- frames --------------------------------------------------------------------

sub _send {
    my ($self, %f) = @_;
    return 0 if $self->{gone};
    if (!$self->{head_sent}) {
        $self->{head_sent} = 1;
        $f{head} = { status => $self->{code}, reason => $self->{reason}, headers => $self->{headers} };
    }
    if ($f{end}) {
        $self->{ended} = 1;
        $f{retire} = 1 if $self->_retiring;
    }
    return 1 if $self->{slot}->send(\%f);
    $self->{gone} = 1;
    return 0;
}

# The app asked for this worker to exit after the response (X4): the end
# frame says so, and Go dispatches nothing more to this process.
sub _retiring {
    my $env = $_[0]{env};
    return $env && $env->{'psgix.harakiri.commit'} ? 1 : 0;
}

# One chunk as frames of at most $MAX_CHUNK bytes; end/abort on the last.
sub _send_body {
    my ($self, $data, %last) = @_;
    while (length($data) > $MAX_CHUNK) {
        $self->_send(body => substr($data, 0, $MAX_CHUNK, '')) or return 0;
    }
    # Never an empty frame (CONTRACT: "Never send an empty body"), e.g. for
    # a chunk that the Content-Length cut to nothing.
    return 1 unless length $data || %last || !$self->{head_sent};
    return $self->_send((length $data ? (body => $data) : ()), %last);
}

sub _add_length {
    my ($self, $n) = @_;
    return if defined $self->{length} || $self->{head_sent};
    return if $self->{code} == 204 || $self->{code} == 304;
    # HEAD: never a made-up 0 just because the body was left out (P24/W29).
    return if $self->{is_head} && !$n;
    push @{ $self->{headers} }, [ 'Content-Length', $n ];
    $self->{length} = $self->{left} = $n;
}

# A body chunk from the app as bytes; dies on a wide character (P16).
sub _bytes {
    my ($self, $data) = @_;
    return '' unless defined $data;
    if (ref $data) {
        error(protocol => "the response body holds a reference (" . ref($data) . "), not a string\n")
          unless overload::Method($data, '""');
        $data = "$data";
    }
    return $data unless utf8::is_utf8($data);
    utf8::downgrade($data, 1)
      or error(protocol => "wide character (above U+00FF) in the response body: "
          . "encode it to bytes first, e.g. with Encode::encode_utf8\n");
    return $data;
}

# Takes what the Content-Length still allows of $data (G13).
sub _fit {
    my ($self, $data) = @_;
    return $data unless defined $self->{left};
    if (length $data > $self->{left}) {
        Bridge::Runner::Log::log(warn => "response body is longer than its Content-Length $self->{length}: truncated");
        $data = substr($data, 0, $self->{left});
        $self->{overrun} = 1;
    }
    $self->{left} -= length $data;
    return $data;
}

# The end frame: an abort when the body is short of its Content-Length.
sub _finish {
    my $self = shift;
    return if $self->{ended};
    $self->_add_length(0) unless $self->{head_sent};
    if (!$self->{no_body} && $self->{left}) {
        Bridge::Runner::Log::log(warn => "response body is $self->{left} bytes short of its Content-Length: aborted");
        return $self->_send(end => 1, abort => 1);
    }
    return $self->_send(end => 1);
}

# -- the three response forms -------------------------------------------------

# [status, headers, \@body] (P14): every item is there already, so the whole
# body goes as one frame with the head and end: a hello world is one message.
sub send_array {
    my ($self, $body) = @_;
    my $data;
    if (@$body == 1 && defined $body->[0] && !ref $body->[0] && !utf8::is_utf8($body->[0])) {
        $data = $body->[0];    # one plain byte string: nothing to check
    }
    else {
        my @parts = map { $self->_bytes($_) } @$body;    # all checked before anything is sent
        $data = join '', @parts;
    }
    if (!$self->{no_body} && !defined $self->{length} && !$self->{head_sent} && length $data <= $MAX_CHUNK) {
        # The usual case, in one frame: _add_length, _fit and _send_body
        # would add the Content-Length, keep all of it and send it at once.
        push @{ $self->{headers} }, [ 'Content-Length', length $data ];
        $self->{length} = length $data;
        $self->{left}   = 0;
        return $self->_send((length $data ? (body => $data) : ()), end => 1);
    }
    if ($self->{no_body}) {
        Bridge::Runner::Log::log(debug => "body of a $self->{code} response dropped")
          if length $data && !$self->{is_head};
        $self->_add_length(length $data) if $self->{is_head};
        return $self->_send(end => 1);
    }
    $self->_add_length(length $data);
    $data = $self->_fit($data);
    if ($self->{left}) {
        Bridge::Runner::Log::log(warn => "response body is $self->{left} bytes short of its Content-Length: aborted");
        return $self->_send_body($data, end => 1, abort => 1);
    }
    return $self->_send_body($data, end => 1);
}

# [status, headers, $handle] (P15): getline with $/ = \65536 until undef,
# then close exactly once. A regular file may go as a File frame (G23).
sub send_handle {
    my ($self, $body) = @_;
    $self->{body} = $body;
    if (my $file = _file_region($body)) {
        my ($path, $offset, $size) = @$file;
        $self->_add_length($size);
        if ($self->{no_body}) {
            return $self->_send(end => 1);
        }
        if (!defined $self->{left} || $size >= $self->{left}) {
            my $length = $size;
            if (defined $self->{left} && $size > $self->{left}) {
                Bridge::Runner::Log::log(warn => "file is " . ($size - $self->{left})
                      . " bytes longer than the response's Content-Length: truncated");
                $length = $self->{left};
            }
            $self->{left} = 0;
            # Go opens the path after this frame: the handle stays open (a
            # File::Temp would unlink it) until the slot's next frame.
            $self->{keep_open} = 1;
            return $self->_send(file => { path => $path, offset => $offset, length => $length }, end => 1);
        }
        # Shorter than its Content-Length: iterate, so that the abort comes
        # at the end of what is really there.
    }
    local $/ = \65536;
    while (defined(my $line = $body->getline)) {
        $line = $self->_bytes($line);
        next unless length $line;
        if ($self->{no_body}) {
            # The head is final now (W30/G14): no need to read on.
            Bridge::Runner::Log::log(debug => "body of a $self->{code} response dropped")
              unless $self->{is_head};
            last;
        }
        $line = $self->_fit($line);
        $self->_send_body($line) or return 0;
        last if $self->{overrun};
    }
    return $self->_finish;
}

# The 2-element responder call (P17): the head goes out at once, because
# streaming apps (SSE) need it on the wire before the first event.
sub start_stream {
    my $self = shift;
    return $self->_send;
}

sub write {
    my ($self, $data) = @_;
    $data = $self->_bytes($data);
    return 1 unless length $data;
    return 1 if $self->{no_body} || $self->{overrun};
    $data = $self->_fit($data);
    return $self->_send_body($data);
}

sub finish { $_[0]->_finish }

# -- failures -----------------------------------------------------------------

# The app failed: {error, end} before the head (Go answers 500), {error, end,
# abort} after it (Go cuts the connection). Text goes to Go's log only.
sub fail {
    my ($self, $err) = @_;
    return 0 if $self->{ended} || $self->{gone};
    my ($kind, $message, $trace) = Bridge::Runner::Error::describe($err);
    $self->{ended} = 1;
    my %f = (error => { kind => $kind, message => $message, traceback => $trace }, end => 1);
    $f{abort}  = 1 if $self->{head_sent};
    $f{retire} = 1 if $self->_retiring;
    my $ok = $self->{slot}->send(\%f);
    $self->{gone} = 1 unless $ok;
    return $ok;
}

# -- the body's close -----------------------------------------------------------

# Calls $body->close exactly once, whatever happened (P15, G5).
sub close_body {
    my $self = shift;
    return if $self->{closed};
    $self->{closed} = 1;
    my $body = delete $self->{body} or return;
    my $ok = eval { $body->close; 1 };
    Bridge::Runner::Log::log(error => "exception in the response body's close: " . _first_line($@),
        traceback => "$@") unless $ok;
}

sub _first_line { my $s = "" . shift; $s =~ s/\n.*//s; $s }

# (absolute path, offset, bytes to the end) when the handle is a regular
# file whose path leads to the same file and that we can read, read without
# any layer that would change its bytes; else undef. Then Go can send the
# bytes itself and they are exactly what getline would have produced.
sub _file_region {
    my $fh = shift;
    return undef unless ref $fh;
    my $fd = eval { Plack::Util::is_real_fh($fh) ? fileno($fh) : undef };
    return undef unless defined $fd && $fd >= 0;
    my @layers = eval { PerlIO::get_layers($fh) };
    return undef if !@layers || grep { !/^(?:unix|perlio|stdio|raw)$/ } @layers;
    my @st = stat $fh;
    return undef unless @st && Fcntl::S_ISREG($st[2]);
    my $path = eval { $fh->can('path') ? $fh->path : undef };
    $path = readlink("/proc/self/fd/$fd") unless defined $path && length $path;
    $path = File::Spec->rel2abs($path) if defined $path && length $path && $path !~ m{^/};
    return undef unless defined $path && $path =~ m{^/} && -r $path;
    my @pst = stat $path;
    return undef unless @pst && $pst[0] == $st[0] && $pst[1] == $st[1];
    my $offset = tell $fh;
    return undef if $offset < 0;
    my $size = $st[7] - $offset;
    return [ $path, $offset, $size < 0 ? 0 : $size ];
}

package Bridge::Runner::Error;
# An error the shim raises, with its Error.kind.
use overload '""' => sub { $_[0]{message} }, fallback => 1;

sub new {
    my ($class, $kind, $message) = @_;
    $message = "$message";
    $message .= "\n" unless $message =~ /\n\z/;
    return bless { kind => $kind, message => $message }, $class;
}

sub kind { $_[0]{kind} }

# (kind, message, traceback) for an Error frame from anything $@ can hold.
sub describe {
    my $err = shift;
    my $kind = Scalar::Util::blessed($err) && $err->isa(__PACKAGE__) ? $err->kind : 'app';
    my $text = defined $err ? "$err" : 'unknown error';
    if (Scalar::Util::blessed($err) && !$err->isa(__PACKAGE__)) {
        # Exception objects: their own text, and a trace if they carry one.
        my $trace = eval { $err->can('trace') && $err->trace } // '';
        $text .= "\n$trace" if length $trace && ref(\$trace) eq 'SCALAR';
    }
    (my $message = $text) =~ s/\s+\z//;
    $message =~ s/\n.*//s;
    $message = 'the application died' unless length $message;
    return ($kind, $message, $text);
}

package Bridge::Runner::Disconnected;
# What the writer dies with once the client is gone (P18): the shim knows it
# is not an app error and logs it at info.
use overload '""' => sub { "the client went away (the request was cancelled)\n" }, fallback => 1;
sub new { bless {}, shift }

1;
