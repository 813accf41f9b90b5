package Bridge::Runner::Service;
# The services a runner serves (runners/CONTRACT.md, "Services") and the
# loop that runs requests from the Slot streams one at a time, in arrival
# order: the shim has one app thread however many slots Go opens.
use strict;
use warnings;

use Bridge::Runner::GRPC;
use Bridge::Runner::Log;
use Bridge::Runner::Proto qw(encode_describe_response HEALTH_SERVING EMPTY);
use Bridge::Runner::Slot;

our $VERSION = '0.1';

sub new {
    my ($class, %a) = @_;
    my $self = bless {
        psgi     => $a{psgi},    # Bridge::Runner::PSGI
        describe => {
            language         => 'perl',
            language_version => sprintf('%vd', $^V),
            interface        => 'psgi/1.1',
            app              => $a{app_name},
            threads          => 1,
            # bridge keeps up to this many Slot streams open (BRIDGE_SLOTS);
            # their requests are served one at a time all the same.
            slots            => $a{slots} || 1,
            pid              => $$,
            server           => "bridge-psgi/$VERSION Protocol::HTTP2/$Protocol::HTTP2::VERSION",
        },
        slots    => [],
        stop     => 0,           # Shutdown RPC, SIGTERM or harakiri: drain and exit
        busy     => 0,
        # The id of the request being served, for Describe. Describe is only
        # answered while the app waits on the loop (a streaming write), and
        # while the app runs otherwise not at all, which bridge counts as stuck.
        running  => undef,
    }, $class;
    Scalar::Util::weaken(my $w = $self);
    $self->{grpc} = Bridge::Runner::GRPC->new(routes => {
        '/grpc.health.v1.Health/Check'    => { unary => sub { HEALTH_SERVING } },
        '/plugin.GRPCController/Shutdown' => { unary => sub {
            Bridge::Runner::Log::log(info => 'shutdown requested by bridge');
            $w->stop('shutdown');
            EMPTY;
        } },
        # Output goes to stderr, which bridge reads itself.
        '/plugin.GRPCStdio/StreamStdio' => { server_stream => sub { } },
        '/bridge.v1.Runner/Describe'    => { unary => sub {
            encode_describe_response({ %{ $w->{describe} }, running => [ grep { defined } $w->{running} ] });
        } },
        '/bridge.v1.Runner/Slot'        => { open  => sub {
            push @{ $w->{slots} }, Bridge::Runner::Slot->new(shift, $w->{grpc});
        } },
    });
    return $self;
}

sub grpc { $_[0]{grpc} }

sub listen { my $self = shift; $self->{grpc}->listen(@_) }

# Drain and exit after the current request ($why: for the log).
sub stop {
    my ($self, $why) = @_;
    $self->{stop} ||= $why;
}

sub stopping { $_[0]{stop} }

=head2 run

Serves until stopped. Requests whose head has already arrived are still
served after a stop (in-flight, from Go's side); then the connections are
closed and run returns.

=cut

sub run {
    my $self = shift;
    my $grpc = $self->{grpc};
    while (1) {
        if ($self->{stop} && !defined $self->{stop_seq}) {
            # Requests Go has already sent are in flight from its side:
            # take in what the socket holds, and serve up to there.
            for (1 .. 100) { last unless $grpc->pump(0) }
            $self->{stop_seq} = Bridge::Runner::Slot::last_seq();
        }
        $self->_tidy;
        my $slot = $self->_next_ready;
        if (!$slot) {
            last if $self->{stop};
            $grpc->pump(1);
            next;
        }
        $self->_serve($slot);
    }
    Bridge::Runner::Log::log(info => "stopping ($self->{stop})");
    $_->close_deferred(1) for @{ $self->{slots} };
    $grpc->close_all;
}

sub _serve {
    my ($self, $slot) = @_;
    $slot->close_deferred(1);
    my $frame = $slot->take;
    if (defined $frame->{bad}) {
        chomp(my $why = $frame->{bad});
        Bridge::Runner::Log::log(error => "undecodable RequestFrame ($why)", kind => 'internal', bytes => $frame->{hex});
        $slot->send({ error => { kind => 'internal', message => "undecodable RequestFrame: $why" }, end => 1 });
        return;
    }
    if (!$frame->{head}) {
        Bridge::Runner::Log::log(warn => 'request frame without a head between requests: dropped')
          unless !length($frame->{body}) && $frame->{end};
        return;
    }
    $self->{busy}    = 1;
    $self->{running} = $frame->{head}{request_id};
    my $res = eval { $self->{psgi}->handle($slot, $frame) };
    $self->{busy}    = 0;
    $self->{running} = undef;
    if (!$res) {
        # A bug in the shim (the app's own failures are caught inside).
        my $err = Bridge::Runner::Log::text("$@");
        Bridge::Runner::Log::log(error => "internal error serving a request: $err", kind => 'internal',
            request_id => $frame->{head}{request_id});
        $slot->send({ error => { kind => 'internal', message => 'internal error in the PSGI runner', traceback => $err },
            end => 1, abort => 1 }) unless $slot->closed;
        return;
    }
    $slot->unshift_frame($res->{next}) if $res->{next};
    $slot->{deferred} = $res->{response} if $res->{response};
    if ($res->{harakiri}) {
        Bridge::Runner::Log::log(info => 'psgix.harakiri.commit: the worker exits after this request');
        $self->stop('harakiri');
    }
}

# The slot whose waiting request head came first. (Called twice per
# request: the slot internals are read directly.)
sub _next_ready {
    my $self = shift;
    my ($best, $seq);
    my $stop_seq = $self->{stop_seq};
    for my $slot (@{ $self->{slots} }) {
        my $first = $slot->{inbox}[0] or next;
        my $s = $first->[0];
        # Stopping: only requests that had arrived by then (a new head on a
        # slot would otherwise keep the worker alive for ever).
        next if defined $stop_seq && $s > $stop_seq;
        ($best, $seq) = ($slot, $s) if !defined $seq || $s < $seq;
    }
    return $best;
}

# Forgets closed slots, ends half-closed idle ones, and closes file bodies
# Go has finished with. Cheap when none of that is needed (every turn).
sub _tidy {
    my $self = shift;
    my $closed;
    for my $slot (@{ $self->{slots} }) {
        $slot->close_deferred if $slot->{deferred};
        my $call = $slot->{call};
        next unless $call->{closed} || $call->{half_closed};
        if ($call->{closed}) {
            # Cancelled while it waited for the app thread: never started.
            while (my $f = $slot->take) {
                next unless $f->{head};
                Bridge::Runner::Log::log(info => 'request cancelled before it started',
                    request_id => $f->{head}{request_id});
            }
            $closed = 1;
            next;
        }
        $slot->finish unless @{ $slot->{inbox} };
    }
    $self->{slots} = [ grep { !$_->{call}{closed} } @{ $self->{slots} } ] if $closed;
}

1;
