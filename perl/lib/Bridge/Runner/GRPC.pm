package Bridge::Runner::GRPC;
# A small gRPC server: HTTP/2 with prior knowledge (h2c) over a unix socket,
# on Protocol::HTTP2::Server 1.10, driven by an IO::Select loop that the
# caller pumps. Single-threaded: handlers run inside pump() and must not
# pump themselves; the slot code pumps from the app's side instead.
#
# Known traps of Protocol::HTTP2 1.10 handled here (docs/design.md,
# "Runners and go-plugin", Perl):
# - its stream state machine does not tell local from remote half-close: a
#   stream we end while the client still sends turns the client's next DATA
#   into a connection error. Trailers therefore wait until the client has
#   half-closed (finish() queues them);
# - trailers are sent at once while DATA may still wait for flow-control
#   window: they also wait until the stream has no blocked data;
# - closed streams are never freed: a few bytes each, and slots live long.
use strict;
use warnings;

use Errno ();
use IO::Select;    # blocking writes at shutdown
use IO::Socket::UNIX;
use Socket qw(SOCK_STREAM);
use Scalar::Util ();
use Time::HiRes ();
use Protocol::HTTP2;
use Protocol::HTTP2::Server;
use Protocol::HTTP2::Constants qw(:frame_types :flags :states :settings :errors);
use Bridge::Runner::Log;

# The library's tracer prints to the selected handle (the app's STDOUT);
# its messages go to the log instead, as debug lines or warnings.
{
    no warnings 'redefine';
    *Protocol::HTTP2::Trace::_log = sub {
        my (undef, $level, $message) = @_;
        chomp $message;
        Bridge::Runner::Log::log(($level =~ /^(?:debug|info|notice)$/ ? 'debug' : 'warn'),
            "HTTP/2: $message", component => 'http2');
    };
}

# Closed streams are dropped from the library's table this many seconds
# after they closed (1.10 keeps them for ever; a long-lived worker would
# grow with every cancelled slot). A frame for a dropped stream would be a
# connection error, so the delay is long enough for none to be in flight.
our $PRUNE_AFTER = 60;

# gRPC status codes used here.
use constant { OK => 0, INTERNAL => 13, UNIMPLEMENTED => 12 };

# Streams one connection may have open at once (1.10's default is 100).
# Slots are long-lived; bridge keeps up to --threads + --pipeline of them
# open, plus Describe and Health calls and, briefly, the replacement of a
# cancelled slot.
use constant MAX_STREAMS => 256;

# unix socket paths are limited to sizeof(sun_path) - 1 bytes on Linux.
use constant MAX_SOCKET_PATH => 107;

=head2 new(routes => { '/pkg.Service/Method' => $route, ... })

A route is { unary => sub { my ($request_bytes, $call) = @_; return $reply_bytes } }
for a unary method (a die becomes grpc-status INTERNAL), { server_stream
=> sub { ... } } called on half-close, which sends its messages with
$call->send_message and returns, or { open => sub { my $call = shift; ... } }
for any streaming method: the sub sets $call->{on_message},
{on_half_close} and {on_cancel} as it needs. Unknown methods get
UNIMPLEMENTED.

=cut

sub new {
    my ($class, %a) = @_;
    return bless {
        routes   => $a{routes} || {},
        conns    => {},       # fileno => connection
        listener => undef,
        path     => undef,
        settings => {
            &SETTINGS_MAX_CONCURRENT_STREAMS => MAX_STREAMS,
            # Request bodies arrive in chunks of up to 256 KiB: a larger
            # window than 64 KiB saves Go waiting for WINDOW_UPDATEs.
            &SETTINGS_INITIAL_WINDOW_SIZE => 1 << 20,
        },
    }, $class;
}

sub path { $_[0]{path} }

sub listen {
    my ($self, $dir) = @_;
    my $path = "$dir/bridge-psgi-$$.sock";
    die "socket path $path is longer than " . MAX_SOCKET_PATH . " bytes\n" if length $path > MAX_SOCKET_PATH;
    unlink $path;
    my $sock = IO::Socket::UNIX->new(Type => SOCK_STREAM, Local => $path, Listen => 64)
      or die "cannot listen on unix:$path: $!\n";
    $sock->blocking(0);
    @$self{qw(listener path)} = ($sock, $path);
    return $path;
}

# Stops accepting connections (shutdown); open connections keep working.
sub close_listener {
    my $self = shift;
    my $l = delete $self->{listener} or return;
    close $l;
    unlink $self->{path} if defined $self->{path};
}

# Sends GOAWAY on every connection, writes what is queued, and closes them.
sub close_all {
    my $self = shift;
    $self->close_listener;
    for my $conn (values %{ $self->{conns} }) {
        $conn->{h2}{con}->finish;
        $self->_flush($conn, 1);
        $self->_drop($conn);
    }
}

=head2 pump($timeout)

One turn of the loop: waits up to $timeout seconds for the socket(s),
accepts, reads and feeds frames (running the handlers), writes what is
queued. Returns the number of ready handles (0 on timeout or a signal).

=cut

sub pump {
    my ($self, $timeout) = @_;
    # Frames queued outside a turn (trailers from the slot loop) go first.
    $self->_after;
    my $conns = $self->{conns};
    my ($rin, $win) = ('', '');
    my $listener = $self->{listener};
    vec($rin, fileno $listener, 1) = 1 if $listener;
    my @fds = keys %$conns;
    for my $fd (@fds) {
        my $conn = $conns->{$fd};
        $self->_prune($conn) if $conn->{closed_at};
        vec($rin, $fd, 1) = 1;
        vec($win, $fd, 1) = 1 if length $conn->{out};
    }
    return 0 unless length $rin;
    my $n = select(my $rout = $rin, my $wout = $win, undef, $timeout);
    return 0 if $n <= 0;    # timeout or EINTR
    if (length $win) {
        for my $fd (@fds) {
            next unless vec($wout, $fd, 1);
            my $conn = $conns->{$fd} or next;
            $self->_flush($conn);
        }
    }
    $self->_accept if $listener && vec($rout, fileno $listener, 1);
    for my $fd (@fds) {
        next unless vec($rout, $fd, 1);
        my $conn = $conns->{$fd} or next;
        $self->_read($conn);
    }
    $self->_after;
    return $n;
}

sub _prune {
    my ($self, $conn) = @_;
    my $closed = $conn->{closed_at} or return;
    my $now = time;
    return if $PRUNE_AFTER && ($conn->{pruned_at} // 0) > $now - 10;
    $conn->{pruned_at} = $now;
    my $streams = $conn->{h2}{con}{streams};
    for my $sid (keys %$closed) {
        next if $closed->{$sid} > $now - $PRUNE_AFTER;
        delete $closed->{$sid};
        delete $streams->{$sid} if $streams->{$sid} && ($streams->{$sid}{state} // 0) == CLOSED;
    }
    delete $conn->{closed_at} unless %$closed;
}

sub _accept {
    my $self = shift;
    while (my $sock = $self->{listener}->accept) {
        $sock->blocking(0);
        my $conn = { sock => $sock, in => '', out => '', calls => {} };
        $conn->{h2} = $self->_h2($conn);
        $self->{conns}{ fileno $sock } = $conn;
        $self->_flush($conn);    # our SETTINGS
    }
}

sub _h2 {
    my ($self, $conn) = @_;
    Scalar::Util::weaken(my $wself = $self);
    Scalar::Util::weaken(my $wconn = $conn);
    my $h2;
    $h2 = Protocol::HTTP2::Server->new(
        settings           => { %{ $self->{settings} } },
        on_new_peer_stream => sub { $wself->_new_call($wconn, shift) },
        on_error           => sub {
            Bridge::Runner::Log::log(warn => 'HTTP/2 connection error ' . shift);
        },
    );
    return $h2;
}

sub _new_call {
    my ($self, $conn, $sid) = @_;
    my $con  = $conn->{h2}{con};
    my $call = Bridge::Runner::GRPC::Call->new($self, $conn, $sid);
    $conn->{calls}{$sid} = $call;
    $con->stream_frame_cb($sid, HEADERS, sub { $call->_on_headers(shift) });
    $con->stream_frame_cb($sid, DATA,    sub { $call->_on_data(shift) });
    $con->stream_cb($sid, HALF_CLOSED, sub { $call->_on_half_close });
    $con->stream_cb($sid, CLOSED,      sub { $call->_on_closed });
}

sub _read {
    my ($self, $conn) = @_;
    my $n = sysread($conn->{sock}, $conn->{in}, 1 << 18, length $conn->{in});
    if (!defined $n) {
        return if $!{EAGAIN} || $!{EINTR} || $!{EWOULDBLOCK};
        Bridge::Runner::Log::log(debug => "connection read error: $!");
        return $self->_drop($conn);
    }
    return $self->_drop($conn) if $n == 0;
    my $ok = eval { $self->_input($conn); 1 };
    Bridge::Runner::Log::log(error => 'HTTP/2 input failed: ' . Bridge::Runner::Log::text("$@"), kind => 'internal')
      unless $ok;
    # What the input queued (window updates, replies) is written by the
    # turn's _after.
}

# The fast path for what a busy slot receives: a DATA frame on an open
# stream (one gRPC message, usually a whole request) is handed to its call
# here, with the library's flow-control bookkeeping, instead of through
# Protocol::HTTP2's frame decoder (about 30 sub calls and a trace sprintf
# per frame). Every other frame, and DATA in any unusual state (END_STREAM,
# padding, short of window, a header block in progress), goes to the
# library, in arrival order. Only whole frames are handed over.
sub _input {
    my ($self, $conn) = @_;
    my $h2  = $conn->{h2};
    my $con = $h2->{con};
    if (!$con->{preface} || $con->{shutdown}) {
        # Until the client preface is through, the library reads it all;
        # then it gives back a partial frame it may have kept.
        $h2->feed(delete $conn->{in});
        $conn->{in} = '';
        return unless $con->{preface} && !$con->{shutdown};
        $conn->{in} = $h2->{input};
        $h2->{input} = '';
    }
    my $buf  = \$conn->{in};
    my $len  = length $$buf;
    my $max  = $con->{decode_ctx}{settings}{ SETTINGS_MAX_FRAME_SIZE() };
    my $off  = 0;
    my $slow = 0;    # frames from here to $off go to the library
    while ($len - $off >= 9) {
        my ($hl, $ll, $type, $flags, $sid) = unpack 'CnCCN', substr($$buf, $off, 9);
        my $flen = ($hl << 16) | $ll;
        if ($flen > $max) {
            # The library answers it with FRAME_SIZE_ERROR.
            $off = $len;
            last;
        }
        last if $len - $off - 9 < $flen;
        if ($type == DATA && !($flags & (END_STREAM | PADDED))) {
            if ($off > $slow) {
                $h2->feed(substr($$buf, $slow, $off - $slow));
                $slow = $off;
            }
            $sid &= 0x7fff_ffff;
            my $s    = $con->{streams}{$sid};
            my $call = $conn->{calls}{$sid};
            if ($s && $call && ($s->{state} // 0) == OPEN && !$con->{pending_stream} && !$con->{shutdown}
                && $flen <= $con->{fcw_recv} && $flen <= $s->{fcw_recv})
            {
                my $data = substr($$buf, $off + 9, $flen);
                $off += 9 + $flen;
                $slow = $off;
                # As Protocol::HTTP2::Frame::Data::decode does.
                $con->{fcw_recv} -= $flen;
                $s->{fcw_recv}   -= $flen;
                $con->fcw_update if $con->{fcw_recv} < $max;
                $con->stream_fcw_update($sid) if $s->{fcw_recv} < $max;
                $call->_on_data($data) if $flen;
                next;
            }
        }
        $off += 9 + $flen;
    }
    $h2->feed(substr($$buf, $slow, $off - $slow)) if $off > $slow;
    substr($$buf, 0, $off, '');
}

# Writes queued frames; with $block, until all are written (shutdown).
sub _flush {
    my ($self, $conn, $block) = @_;
    my $h2 = $conn->{h2};
    my $q  = $h2->{con}{queue};
    $conn->{out} .= join '', splice @$q if @$q;
    while (length $conn->{out}) {
        my $n = syswrite($conn->{sock}, $conn->{out});
        if (!defined $n) {
            if ($!{EAGAIN} || $!{EWOULDBLOCK} || $!{EINTR}) {
                return unless $block;
                my $w = IO::Select->new($conn->{sock});
                return unless $w->can_write(2);
                next;
            }
            return $self->_drop($conn);
        }
        substr($conn->{out}, 0, $n, '');
    }
    $self->_drop($conn) if $h2->{con}{shutdown} && !length $conn->{out};
}

# After a turn: send trailers that were waiting, then write everything.
sub _after {
    my $self = shift;
    for my $conn (values %{ $self->{conns} }) {
        if (my $w = $conn->{waiting}) {
            $_->_try_trailers for values %$w;
        }
        # Nothing to write and nothing to close: the usual case.
        my $con = $conn->{h2}{con};
        $self->_flush($conn) if @{ $con->{queue} } || length $conn->{out} || $con->{shutdown};
    }
}

sub _drop {
    my ($self, $conn) = @_;
    return if $conn->{dropped}++;
    delete $self->{conns}{ fileno $conn->{sock} } if defined fileno $conn->{sock};
    close $conn->{sock};
    # Every call on it is cancelled: Go is gone or closed the connection.
    for my $call (values %{ $conn->{calls} }) {
        $call->_on_closed;
    }
    %{ $conn->{calls} } = ();
}

=head2 wait_sent($call, $last)

Pumps until everything queued for $call is on the socket (flow control
included), or the call is closed. Returns true unless the call is closed.
$last: the message ends the exchange, so there is nothing to take in
before writing it.

=cut

sub wait_sent {
    my ($self, $call, $last) = @_;
    my $conn = $call->{conn};
    # Take in what Go sent meanwhile (a RST_STREAM above all: a streaming
    # app must learn that its client went away, G4), without waiting; at
    # most once a millisecond, since a turn of the loop per chunk cost more
    # than the chunk's own write (stream of 100 x 1 KiB: bench/NOTES.md).
    if (!$last) {
        my $now = Time::HiRes::time();
        if ($now - ($self->{pumped_at} // 0) > 0.001) {
            $self->{pumped_at} = $now;
            $self->pump(0);
        }
    }
    while (1) {
        return 0 if $call->{closed};
        $self->_flush($conn);
        return 0 if $call->{closed} || $conn->{dropped};
        return 1 if !length $conn->{out} && !$call->blocked;
        $self->pump(1);
    }
}

package Bridge::Runner::GRPC::Call;
# One gRPC call (an HTTP/2 stream).
use Protocol::HTTP2::Constants qw(:frame_types :errors :settings);

sub new {
    my ($class, $server, $conn, $sid) = @_;
    my $self = bless {
        server       => $server,
        conn         => $conn,
        sid          => $sid,
        path         => undef,
        route        => undef,
        in           => '',     # gRPC framing buffer
        messages     => [],     # for unary calls
        half_closed  => 0,      # the client has sent END_STREAM
        headers_sent => 0,
        trailers     => undef,  # queued until they may go (see the traps above)
        ended        => 0,      # our END_STREAM went out
        closed       => 0,
    }, $class;
    Scalar::Util::weaken($self->{server});
    Scalar::Util::weaken($self->{conn});
    return $self;
}

sub path   { $_[0]{path} }
sub closed { $_[0]{closed} }

sub con { $_[0]{conn}{h2}{con} }

sub blocked {
    my $self = shift;
    my $s = $self->{conn}{h2}{con}{streams}{ $self->{sid} } or return '';
    return defined $s->{blocked_data} && length $s->{blocked_data};
}

sub _on_headers {
    my ($self, $headers) = @_;
    return if defined $self->{path};    # request trailers: none in gRPC
    my %h;
    for (my $i = 0; $i < @$headers; $i += 2) { $h{ $headers->[$i] } //= $headers->[ $i + 1 ] }
    $self->{path}  = $h{':path'} // '';
    $self->{route} = $self->{server}{routes}{ $self->{path} };
    if (!$self->{route}) {
        Bridge::Runner::Log::log(debug => "gRPC method $self->{path} is not implemented");
        $self->finish(Bridge::Runner::GRPC::UNIMPLEMENTED, "unknown method $self->{path}");
        return;
    }
    if (my $open = $self->{route}{open}) {
        my $ok = eval { $open->($self); 1 };
        $self->_internal($@) unless $ok;
    }
}

sub _on_data {
    my ($self, $data) = @_;
    if (!length $self->{in} && length $data > 5 && $self->{route} && (my $cb = $self->{on_message})) {
        # One whole message in one frame (a request, usually): no buffering.
        my ($compressed, $len) = unpack 'CN', $data;
        if (!$compressed && length $data == 5 + $len) {
            my $ok = eval { $cb->(substr($data, 5)); 1 };
            $self->_internal($@) unless $ok;
            return;
        }
    }
    $self->{in} .= $data;
    while (length $self->{in} >= 5) {
        my ($compressed, $len) = unpack 'CN', $self->{in};
        last if length $self->{in} < 5 + $len;
        my $msg = substr($self->{in}, 5, $len);
        substr($self->{in}, 0, 5 + $len, '');
        if ($compressed) {
            # We advertise no grpc-accept-encoding, so this is a client bug.
            $self->reset(PROTOCOL_ERROR);
            return;
        }
        next unless $self->{route};
        if (my $cb = $self->{on_message}) {
            my $ok = eval { $cb->($msg); 1 };
            $self->_internal($@) unless $ok;
        }
        else {
            push @{ $self->{messages} }, $msg;
        }
    }
}

sub _on_half_close {
    my $self = shift;
    return if $self->{half_closed}++;
    my $route = $self->{route};
    if (!$route) {
        $self->_try_trailers;
        return;
    }
    if (my $unary = $route->{unary}) {
        my $reply = eval { $unary->(shift(@{ $self->{messages} }) // '', $self) };
        if (defined $reply) {
            $self->send_message($reply);
            $self->finish(Bridge::Runner::GRPC::OK);
        }
        else {
            $self->_internal($@);
        }
        return;
    }
    if (my $stream = $route->{server_stream}) {
        my $ok = eval { $stream->($self); 1 };
        return $self->_internal($@) unless $ok;
        $self->finish(Bridge::Runner::GRPC::OK);
        return;
    }
    if (my $cb = $self->{on_half_close}) {
        my $ok = eval { $cb->(); 1 };
        $self->_internal($@) unless $ok;
    }
    $self->_try_trailers;
}

sub _on_closed {
    my $self = shift;
    return if $self->{closed}++;
    if (my $conn = $self->{conn}) {
        delete $conn->{calls}{ $self->{sid} };
        $conn->{closed_at}{ $self->{sid} } = time;
        $self->_not_waiting;
    }
    return if $self->{ended};
    # Reset by the client (gRPC cancellation) or the connection went away.
    if (my $cb = delete $self->{on_cancel}) {
        my $ok = eval { $cb->(); 1 };
        Bridge::Runner::Log::log(error => 'cancel handler failed: ' . Bridge::Runner::Log::text("$@"), kind => 'internal')
          unless $ok;
    }
    delete @$self{qw(on_message on_half_close)};
}

sub _internal {
    my ($self, $err) = @_;
    Bridge::Runner::Log::log(error => "gRPC handler for $self->{path} failed: " . Bridge::Runner::Log::text("$err"),
        kind => 'internal');
    $self->finish(Bridge::Runner::GRPC::INTERNAL, 'internal error');
}

=head2 send_message($bytes)

Queues one gRPC message (the response headers go first). It is on the wire
after the server's next flush; wait_sent() waits for that.

=cut

sub send_message {
    my ($self, $bytes) = @_;
    return 0 if $self->{closed} || $self->{ended} || $self->{trailers};
    my $con = $self->{conn}{h2}{con};
    if (!$self->{headers_sent}) {
        $self->{headers_sent} = 1;
        $con->send_headers($self->{sid}, [ ':status' => 200, 'content-type' => 'application/grpc' ], 0);
    }
    my $payload = pack('CN', 0, length $bytes) . $bytes;
    my $l = length $payload;
    my $s = $con->{streams}{ $self->{sid} };
    if ($s && !(defined $s->{blocked_data} && length $s->{blocked_data}) && !$s->{end}
        && $l <= $con->{fcw_send} && $l <= $s->{fcw_send}
        && $l <= $con->{encode_ctx}{settings}{ SETTINGS_MAX_FRAME_SIZE() })
    {
        # One DATA frame that the windows allow: what send_data would do,
        # without its calls (DATA without END_STREAM changes no state).
        $con->{fcw_send} -= $l;
        $s->{fcw_send}   -= $l;
        push @{ $con->{queue} }, pack('CnCCN', $l >> 16, $l & 0xffff, DATA, 0, $self->{sid}) . $payload;
        return 1;
    }
    $con->send_data($self->{sid}, $payload);
    return 1;
}

=head2 finish($status, $message)

Ends the call with grpc-status $status. The trailers go out once the client
has half-closed and all DATA has left (see the traps at the top).

=cut

sub finish {
    my ($self, $status, $message) = @_;
    return if $self->{closed} || $self->{ended} || $self->{trailers};
    my @t = ('grpc-status' => $status);
    push @t, 'grpc-message' => _percent($message) if defined $message && length $message;
    $self->{trailers} = \@t;
    # The server's turns retry until they may go (_after).
    $self->{conn}{waiting}{ $self->{sid} } = $self if $self->{conn};
    $self->_try_trailers;
}

sub _try_trailers {
    my $self = shift;
    my $t = $self->{trailers} or return $self->_not_waiting;
    return $self->_not_waiting if $self->{closed} || $self->{ended};
    return unless $self->{half_closed};
    return if $self->blocked;
    my @h = $self->{headers_sent} ? @$t : (':status' => 200, 'content-type' => 'application/grpc', @$t);
    $self->{ended} = 1;
    delete $self->{trailers};
    $self->_not_waiting;
    $self->con->send_headers($self->{sid}, \@h, 1);
}

sub _not_waiting {
    my $self = shift;
    my $conn = $self->{conn} or return;
    my $w = $conn->{waiting} or return;
    delete $w->{ $self->{sid} };
    delete $conn->{waiting} unless %$w;
    return;
}

# Resets the stream (RST_STREAM); the call counts as cancelled.
sub reset {
    my ($self, $code) = @_;
    return if $self->{closed};
    $self->con->stream_error($self->{sid}, $code // CANCEL);
    $self->_on_closed;
}

# grpc-message is percent-encoded (gRPC over HTTP/2 spec).
sub _percent {
    my $s = shift;
    utf8::encode($s) if utf8::is_utf8($s);
    $s =~ s/([^\x20-\x24\x26-\x7e])/sprintf('%%%02X', ord $1)/ge;
    return $s;
}

1;
