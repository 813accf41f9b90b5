package Bridge::Runner::Slot;
# One bridge.v1.Runner/Slot stream as the PSGI layer sees it: next_frame()
# and send(). Request frames are decoded as they arrive and wait in an
# inbox; the service takes heads from the inboxes in arrival order.
use strict;
use warnings;

use Scalar::Util ();
use Bridge::Runner::Log;
use Bridge::Runner::Proto qw(decode_request_frame encode_response_frame);

my $seq = 0;    # arrival order of frames across all slots

# The arrival number of the latest frame (requests up to it are "in flight").
sub last_seq { $seq }

sub new {
    my ($class, $call, $server) = @_;
    my $self = bless {
        call     => $call,
        server   => $server,    # Bridge::Runner::GRPC, for pumping
        inbox    => [],         # [seq, frame]
        deferred => undef,      # a Response whose body waits to be closed
    }, $class;
    Scalar::Util::weaken($self->{server});
    Scalar::Util::weaken(my $weak = $self);
    $call->{on_message} = sub { $weak->_on_message(shift) if $weak };
    # Cancellation and half-close are looked at by the service and by
    # next_frame/send; nothing to do at the moment they happen.
    $call->{on_cancel}     = sub { };
    $call->{on_half_close} = sub { };
    return $self;
}

sub _on_message {
    my ($self, $bytes) = @_;
    my $frame = eval { decode_request_frame($bytes) };
    if (!$frame) {
        # Not a reset: 1.10 would take Go's DATA still in flight on a reset
        # stream as a connection error. The service answers it with an
        # internal error instead (a 500 for its request).
        $frame = { bad => Bridge::Runner::Log::text("$@"), hex => unpack('H*', substr($bytes, 0, 64)) };
    }
    push @{ $self->{inbox} }, [ ++$seq, $frame ];
}

sub closed      { $_[0]{call}{closed} }
sub half_closed { $_[0]{call}{half_closed} }

# The arrival number of a waiting request head, or undef.
sub ready_seq {
    my $self = shift;
    my $first = $self->{inbox}[0] or return undef;
    return $first->[0];
}

sub take {
    my $self = shift;
    my $e = shift @{ $self->{inbox} } or return undef;
    return $e->[1];
}

sub unshift_frame {
    my ($self, $frame) = @_;
    unshift @{ $self->{inbox} }, [ 0, $frame ];
}

# The next frame of this slot, pumping the loop until it comes; undef once
# the stream is cancelled or closed.
sub next_frame {
    my $self = shift;
    while (1) {
        my $f = $self->take;
        return $f if $f;
        return undef if $self->{call}{closed} || $self->{call}{half_closed};
        $self->{server}->pump(1);
    }
}

# Sends one ResponseFrame and waits until it is on the socket. False when
# the stream is gone (cancelled): the caller stops writing.
sub send {
    my ($self, $frame) = @_;
    my $call = $self->{call};
    return 0 if $call->{closed};
    $call->send_message(encode_response_frame($frame)) or return 0;
    return $self->{server}->wait_sent($call, $frame->{end});
}

# Ends the stream cleanly (after the client half-closed).
sub finish {
    my $self = shift;
    $self->{call}->finish(0);
}

# Closes the body of a response sent as a File frame, once Go is done
# with it: when this slot's next frame arrives or the stream ends.
sub close_deferred {
    my ($self, $force) = @_;
    my $resp = $self->{deferred} or return;
    return unless $force || @{ $self->{inbox} } || $self->{call}{closed} || $self->{call}{half_closed};
    $self->{deferred} = undef;
    $resp->close_body;
}

1;
