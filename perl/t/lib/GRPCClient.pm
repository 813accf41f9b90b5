package GRPCClient;
# A small synchronous gRPC client on Protocol::HTTP2::Client for the
# integration tests: unary calls and raw bidi streams over a unix socket.
use strict;
use warnings;
use IO::Select;
use IO::Socket::UNIX;
use Socket qw(SOCK_STREAM);
use Time::HiRes ();
use Protocol::HTTP2::Client;
use Protocol::HTTP2::Constants qw(:frame_types :flags :states :settings :errors);

# 1.10 validates a trailer block as a response head (it wants :status)
# unless the response announced it with a Trailer header, which gRPC
# servers do not do. A block without pseudo-headers on a stream that has
# its head already is a trailer here.
{
    no warnings 'redefine';
    my $orig = \&Protocol::HTTP2::Stream::validate_headers;
    *Protocol::HTTP2::Stream::validate_headers = sub {
        my ($self, $headers, $sid, $is_response) = @_;
        if ($is_response && $self->stream_headers($sid) && !grep { /^:/ } @$headers[ grep { !($_ % 2) } 0 .. $#$headers ]) {
            return 1;
        }
        return $orig->(@_);
    };
}

$SIG{PIPE} = 'IGNORE';    # a runner that exits must not kill the test

sub new {
    my ($class, $path) = @_;
    my $sock = IO::Socket::UNIX->new(Type => SOCK_STREAM, Peer => $path) or die "connect $path: $!";
    $sock->blocking(0);
    my $h2  = Protocol::HTTP2::Client->new(keepalive => 1, on_error => sub { warn "client h2 error @_\n" });
    my $con = $h2->{con};
    $con->enqueue_raw($con->preface_encode);
    $con->enqueue(SETTINGS, 0, 0, { &SETTINGS_INITIAL_WINDOW_SIZE => 4 << 20 });
    $con->preface(1);
    my $self = bless { sock => $sock, h2 => $h2, con => $con, out => '' }, $class;
    $self->flush;
    return $self;
}

sub flush {
    my $self = shift;
    while (defined(my $f = $self->{con}->dequeue)) { $self->{out} .= $f }
    while (length $self->{out}) {
        my $n = syswrite($self->{sock}, $self->{out});
        if (!defined $n) {
            if ($!{EPIPE} || $!{ECONNRESET}) {    # the server is gone
                $self->{eof} = 1;
                $self->{out} = '';
                return;
            }
            die "write: $!" unless $!{EAGAIN};
            IO::Select->new($self->{sock})->can_write(1);
            next;
        }
        substr($self->{out}, 0, $n, '');
    }
}

sub pump {
    my ($self, $timeout) = @_;
    if (my $also = $self->{on_pump}) {
        # An in-process server (t/grpc.t): give it a turn, then look quickly.
        $also->();
        $timeout = 0.01 if $timeout > 0.01;
    }
    $self->flush;
    return 0 unless IO::Select->new($self->{sock})->can_read($timeout);
    my $n = sysread($self->{sock}, my $buf, 1 << 20);
    if (!$n) {
        return 0 if !defined $n && $!{EAGAIN};
        $self->{eof} = 1;
        return 0;
    }
    $self->{h2}->feed($buf);
    $self->flush;
    return 1;
}

# Pumps until $cond->() is true; dies after $timeout seconds.
sub wait_for {
    my ($self, $cond, $timeout, $what) = @_;
    my $end = Time::HiRes::time() + ($timeout // 10);
    until ($cond->()) {
        die "timeout waiting for " . ($what // 'condition') . "\n" if Time::HiRes::time() > $end;
        die "connection closed while waiting for " . ($what // 'condition') . "\n" if $self->{eof};
        $self->pump(0.2);
    }
    return 1;
}

sub open_stream {
    my ($self, $path) = @_;
    my $con = $self->{con};
    my $sid = $con->new_stream;
    my $st  = { sid => $sid, messages => [], in => '', headers => undef, trailers => undef, closed => 0 };
    $con->send_headers($sid, [
        ':method' => 'POST', ':scheme' => 'http', ':authority' => 'localhost', ':path' => $path,
        'content-type' => 'application/grpc', 'te' => 'trailers',
    ], 0);
    $con->stream_frame_cb($sid, HEADERS, sub {
        my %h = @{ $_[0] };
        if ($st->{headers} || exists $h{'grpc-status'}) {
            $st->{trailers} = \%h;
            $st->{headers} //= \%h;
            # What had arrived when the trailers came (ordering tests).
            $st->{at_trailers} = { messages => scalar @{ $st->{messages} }, partial => length $st->{in} };
        }
        else { $st->{headers} = \%h }
    });
    $con->stream_frame_cb($sid, DATA, sub {
        $st->{in} .= shift;
        while (length $st->{in} >= 5) {
            my ($c, $len) = unpack 'CN', $st->{in};
            last if length $st->{in} < 5 + $len;
            push @{ $st->{messages} }, substr($st->{in}, 5, $len);
            substr($st->{in}, 0, 5 + $len, '');
        }
    });
    $con->stream_cb($sid, CLOSED, sub { $st->{closed} = 1 });
    $self->flush;
    return $st;
}

sub send_msg {
    my ($self, $st, $bytes, $end) = @_;
    $self->{con}->send_data($st->{sid}, pack('CN', 0, length $bytes) . $bytes, $end ? 1 : undef);
    $self->flush;
}

sub half_close {
    my ($self, $st) = @_;
    $self->{con}->send_data($st->{sid}, '', 1);
    $self->flush;
}

sub cancel {
    my ($self, $st) = @_;
    $self->{con}->stream_error($st->{sid}, CANCEL);
    $self->flush;
}

# A unary call: (reply bytes or undef, trailers hashref).
sub unary {
    my ($self, $path, $bytes, $timeout) = @_;
    my $st = $self->open_stream($path);
    $self->send_msg($st, $bytes // '', 1);
    $self->wait_for(sub { $st->{trailers} }, $timeout, $path);
    return ($st->{messages}[0], $st->{trailers});
}

# The next message on a stream (waits for it).
sub next_msg {
    my ($self, $st, $timeout) = @_;
    $self->wait_for(sub { @{ $st->{messages} } || $st->{trailers} || $st->{closed} }, $timeout, 'a message');
    return shift @{ $st->{messages} };
}

1;
