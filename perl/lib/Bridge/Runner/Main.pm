package Bridge::Runner::Main;
# perl bin/bridge-psgi-runner --app FILE.psgi [--threads N] [--slots N] [--lint]
#
# Start-up order (runners/CONTRACT.md): check the cookie; keep a copy of
# stdout for the handshake and point fd 1 and STDOUT/STDERR at the log; load
# the app, so that a broken app makes the process exit with the error
# instead of leaving bridge a half-started plugin; listen; write the
# handshake line on the saved stdout; serve until Shutdown, SIGTERM or
# harakiri.
use strict;
use warnings;

use Carp ();
use Getopt::Long ();
use Scalar::Util ();
use Time::HiRes ();
use overload ();
use Bridge::Runner::Duration ();
use Bridge::Runner::GRPC ();
use Bridge::Runner::Log;

use constant COOKIE => ('BRIDGE_PLUGIN', 'runner-v1');
# Slot streams served at most: half of what one HTTP/2 connection may have
# open (Bridge::Runner::GRPC::MAX_STREAMS; Protocol::HTTP2 never frees a
# closed stream, so the limit cannot grow), so that each can have a
# replacement opened while a cancelled one winds down, and Describe and
# Health calls still fit. Asked for more, the runner offers this many in
# Describe, and bridge opens no more (runners/CONTRACT.md).
use constant MAX_SLOTS => Bridge::Runner::GRPC::MAX_STREAMS / 2;

sub usage {
    return <<'USAGE';
usage: perl bin/bridge-psgi-runner --app FILE.psgi [--threads N] [--slots N] [--grace DURATION] [--lint]

bridge's PSGI runner, a go-plugin gRPC plugin started by bridge (it refuses
to run without BRIDGE_PLUGIN=runner-v1). See perl/README.md.
USAGE
}

sub main {
    my @argv = @_;
    my %opt;
    Getopt::Long::Configure(qw(no_ignore_case no_auto_abbrev));
    my $parsed = Getopt::Long::GetOptionsFromArray(\@argv, \%opt,
        'app=s', 'threads=i', 'slots=i', 'grace=s', 'lint', 'help');
    if ($opt{help}) {
        print STDERR usage();
        return 0;
    }
    if (!$parsed || !defined $opt{app} || @argv) {
        Bridge::Runner::Log::log(error => 'bad arguments: ' . join(' ', @_), usage => usage());
        return 2;
    }
    if (my $problem = handshake_env_error('bridge-psgi-runner')) {
        Bridge::Runner::Log::log(error => $problem);
        return 1;
    }
    my ($grace, $grace_name) = defined $opt{grace} ? ($opt{grace}, '--grace')
      : (length($ENV{BRIDGE_GRACE} // '') ? $ENV{BRIDGE_GRACE} : '30s', 'BRIDGE_GRACE');
    my $grace_ns = eval { Bridge::Runner::Duration::parse($grace) };
    if (!defined $grace_ns || $grace_ns < 0) {
        Bridge::Runner::Log::log(error => "$grace_name=$grace is not a duration such as 30s, 1m30s or 500ms");
        return 1;
    }
    my $threads = $opt{threads} // $ENV{BRIDGE_THREADS} // 1;
    $threads = 1 unless $threads =~ /^\d+$/ && $threads >= 1;
    # Slot streams bridge may keep open (its --pipeline): missing, invalid or
    # fewer than the threads means one per thread.
    my $slots = $opt{slots} // $ENV{BRIDGE_SLOTS} // '';
    $slots = $threads unless $slots =~ /^\d+$/ && $slots >= $threads;
    $slots += 0;
    if ($slots > MAX_SLOTS) {
        Bridge::Runner::Log::log(warn => "$slots slots asked for: the PSGI runner serves at most " . MAX_SLOTS
              . ' Slot streams (its HTTP/2 connection allows ' . Bridge::Runner::GRPC::MAX_STREAMS
              . ' streams at once, with room for replacements of cancelled ones and other calls); '
              . 'Describe offers ' . MAX_SLOTS);
        $slots = MAX_SLOTS;
    }
    my $workers = $ENV{BRIDGE_WORKERS} // 1;
    $workers = 1 unless $workers =~ /^\d+$/;

    # The handshake pipe is only reachable through this copy from now on.
    open(my $handshake, '>&', \*STDOUT) or do {
        Bridge::Runner::Log::log(error => "cannot dup stdout: $!");
        return 1;
    };
    Bridge::Runner::Log::capture_stdio();
    binmode STDIN;
    $SIG{PIPE} = 'IGNORE';
    # As Starman and plackup -E deployment: no development middleware.
    $ENV{PLACK_ENV} //= 'deployment';

    my $app = load_app($opt{app});
    Bridge::Runner::Log::end_request();    # a partial line printed while loading
    return 1 unless $app;
    if ($opt{lint}) {
        require Plack::Middleware::Lint;
        $app = Plack::Middleware::Lint->wrap($app);
    }
    # Several slots are the normal case (bridge's --pipeline) and say
    # nothing; threads would suggest app calls at once, which never happen.
    if ($threads > 1) {
        Bridge::Runner::Log::log(info => "$threads threads asked for: the PSGI runner runs one request at a time "
              . "(psgi.multithread is false); the requests on its $slots slots wait their turn");
    }

    require Bridge::Runner::PSGI;
    require Bridge::Runner::Service;
    my $psgi    = Bridge::Runner::PSGI->new(app => $app, workers => $workers);
    my $service = Bridge::Runner::Service->new(psgi => $psgi, app_name => $opt{app}, slots => $slots);
    my $path = eval { $service->listen($ENV{PLUGIN_UNIX_SOCKET_DIR}) };
    if (!defined $path) {
        Bridge::Runner::Log::log(error => 'cannot start the gRPC server: ' . Bridge::Runner::Log::text("$@"));
        return 1;
    }

    install_signals($service, $grace_ns / 1e9);

    syswrite($handshake, "1|1|unix|$path|grpc\n");
    close $handshake;
    Bridge::Runner::Log::log(info => "serving $opt{app}", app => $opt{app}, socket => $path,
        worker => $ENV{BRIDGE_WORKER}, workers => $workers + 0, threads => $threads + 0, slots => $slots);

    $service->run;
    Bridge::Runner::Log::log(info => 'stopped');
    return 0;
}

=head2 handshake_env_error($prog)

Why the environment is not one bridge starts a runner in, or undef. The same
checks, in the same words, in every shim (runners/CONTRACT.md, "Start-up").

=cut

sub handshake_env_error {
    my $prog = shift;
    my ($name, $value) = COOKIE;
    return "$prog is a bridge runner plugin, started by bridge; $name is not $value"
      if ($ENV{$name} // '') ne $value;
    my $versions = $ENV{PLUGIN_PROTOCOL_VERSIONS} // '';
    return "PLUGIN_PROTOCOL_VERSIONS is $versions: this runner speaks protocol version 1 only"
      if length $versions && !grep { $_ eq '1' } split /,/, $versions;
    return "PLUGIN_UNIX_SOCKET_DIR is not set: bridge names the directory for the runner's socket"
      if !length($ENV{PLUGIN_UNIX_SOCKET_DIR} // '');
    return undef;
}

=head2 load_app($file)

Plack::Util::load_psgi, with a load failure logged as one error line
("cannot load FILE: reason") that holds the details. Returns the app or undef.

=cut

sub load_app {
    my $file = shift;
    require Plack::Util;
    my $app = eval { Plack::Util::load_psgi($file) };
    my $err = $@;
    if (!$err && !_callable($app)) {
        $err = 'it did not return a code reference (its last statement must be the app, e.g. my $app = sub { ... };), got '
          . (defined $app ? (ref $app ? ref($app) . ' reference' : "'$app'") : 'undef') . "\n";
    }
    if ($err) {
        my $details = Bridge::Runner::Log::text("$err");
        (my $reason = $details) =~ s/\s+\z//;
        $reason =~ s/\n.*//s;
        # load_psgi prefixes "Error while loading /abs/path: "; the line says it once.
        $reason =~ s/^Error while loading \S+: //;
        Bridge::Runner::Log::log(error => "cannot load $file: $reason", app => $file, traceback => $details);
        return undef;
    }
    return $app;
}

sub _callable {
    my $app = shift;
    return 1 if ref $app eq 'CODE';
    return Scalar::Util::blessed($app) && overload::Method($app, '&{}') ? 1 : 0;
}

# SIGTERM/SIGINT: finish the current request, then exit 0 (G25). A second
# signal, or the grace period running out, makes the app's current call die
# (its body is still closed and the response aborted). SIGUSR1 logs a stack.
sub install_signals {
    my ($service, $grace) = @_;
    require Scalar::Util;
    require overload;
    my $signals = 0;
    my $hurry = sub {
        my $why = shift;
        Bridge::Runner::Log::log(warn => "$why: ending the request in flight");
        # Only the app's code is interrupted; the shim's loop just stops.
        die Bridge::Runner::Error->new(internal => "$why\n") if $service->{busy};
    };
    my $term = sub {
        my $sig = shift;
        $signals++;
        if ($signals == 1) {
            Bridge::Runner::Log::log(info => "SIG$sig: finishing the request in flight, then exiting");
            $service->stop("SIG$sig");
            # A grace of 0 (BRIDGE_GRACE=0s) waits for nothing.
            Time::HiRes::alarm($grace > 0 ? $grace : 0.001);
            return;
        }
        $hurry->("second SIG$sig");
    };
    $SIG{TERM} = $term;
    $SIG{INT}  = $term;
    $SIG{ALRM} = sub { $hurry->("shutdown grace of ${grace}s is over") };
    $SIG{USR1} = sub {
        Bridge::Runner::Log::log(info => 'stack dump (SIGUSR1)', traceback => Carp::longmess('SIGUSR1'));
    };
}

1;
