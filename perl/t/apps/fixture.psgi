# The app of the integration tests (t/process.t): one route per behaviour.
use strict;
use warnings;
use Time::HiRes ();

print "fixture loading\n";    # G7: must not get before the handshake

my %routes = (
    '/hello' => sub { [ 200, [ 'Content-Type' => 'text/plain' ], [ 'hello world' ] ] },
    '/echo'  => sub {
        my $env = shift;
        my $body = do { local $/; my $fh = $env->{'psgi.input'}; <$fh> } // '';
        [ 200, [ 'Content-Type' => 'application/octet-stream' ], [ $body ] ];
    },
    '/env' => sub {
        my $env = shift;
        my @keys = grep { !ref $env->{$_} } sort keys %$env;
        [ 200, [ 'Content-Type' => 'text/plain' ], [ map { "$_=$env->{$_}\n" } @keys ] ];
    },
    '/stream' => sub {
        sub {
            my $w = shift->([ 200, [ 'Content-Type' => 'text/event-stream' ] ]);
            $w->write("data: $_\n\n") for 1 .. 3;
            $w->close;
        };
    },
    '/die' => sub { die "boom from the fixture app\n" },
    '/die-after' => sub {
        sub {
            my $w = shift->([ 200, [ 'Content-Type' => 'text/plain' ] ]);
            $w->write('partial');
            die "boom after the head\n";
        };
    },
    '/print' => sub {
        print "HTTP/1.1 200 OK\r\n\r\nprinted to stdout\n";
        warn "a warning from the app\n";
        $_[0]{'psgi.errors'}->print("to psgi.errors\n");
        $_[0]{'psgix.logger'}->({ level => 'warn', message => 'via psgix.logger' });
        [ 200, [ 'Content-Type' => 'text/plain' ], [ 'unchanged' ] ];
    },
    '/sleep' => sub {
        my $env = shift;
        my ($n) = ($env->{QUERY_STRING} =~ /(\d+(?:\.\d+)?)/);
        # A signal (SIGTERM, SIGUSR1) ends select early: sleep on until the
        # time is up, so only a handler that dies cuts the request short.
        my $until = Time::HiRes::time() + ($n // 1);
        while ((my $left = $until - Time::HiRes::time()) > 0) { select(undef, undef, undef, $left) }
        [ 200, [ 'Content-Type' => 'text/plain' ], [ 'slept' ] ];
    },
    '/endless' => sub {
        my $env = shift;
        my $closed = $env->{'bridge.test.closefile'};
        sub {
            my $w = shift->([ 200, [ 'Content-Type' => 'text/plain' ] ]);
            my $ok = eval { for my $i (1 .. 1_000_000) { $w->write("chunk $i\n"); select(undef, undef, undef, 0.01) } 1 };
            my $err = $@;
            open my $fh, '>>', "$ENV{BRIDGE_TEST_DIR}/endless.log" or die $!;
            print $fh ($ok ? "finished\n" : "write died: $err");
            close $fh;
            die $err unless $ok;
        };
    },
    '/harakiri' => sub {
        my $env = shift;
        $env->{'psgix.harakiri.commit'} = 1;
        push @{ $env->{'psgix.cleanup.handlers'} }, sub {
            open my $fh, '>>', "$ENV{BRIDGE_TEST_DIR}/cleanup.log" or die $!;
            print $fh "cleanup ran\n";
        };
        [ 200, [ 'Content-Type' => 'text/plain' ], [ 'bye' ] ];
    },
    '/touch' => sub {
        open my $fh, '>>', "$ENV{BRIDGE_TEST_DIR}/touched" or die $!;
        print $fh "touched\n";
        [ 200, [ 'Content-Type' => 'text/plain' ], [ 'touched' ] ];
    },
    # Logs its entry and exit with its request id (several slots at once).
    '/turn' => sub {
        my $env = shift;
        my $log = "$ENV{BRIDGE_TEST_DIR}/turns.log";
        my $say = sub { open my $fh, '>>', $log or die $!; print $fh "$_[0] $env->{'bridge.request_id'}\n" };
        $say->('enter');
        Time::HiRes::sleep(0.05);
        $say->('leave');
        [ 200, [ 'Content-Type' => 'text/plain' ], [ 'turned' ] ];
    },
    '/file' => sub {
        open my $fh, '<', "$ENV{BRIDGE_TEST_DIR}/file.txt" or die $!;
        [ 200, [ 'Content-Type' => 'text/plain' ], $fh ];
    },
);

my $app = sub {
    my $env = shift;
    my $route = $routes{ $env->{PATH_INFO} } || sub { [ 404, [ 'Content-Type' => 'text/plain' ], [ 'not found' ] ] };
    $route->($env);
};
