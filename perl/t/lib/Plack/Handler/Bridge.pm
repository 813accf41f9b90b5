package Plack::Handler::Bridge;
# A Plack handler for tests: Plack::Test::Suite starts "the server" in a
# child process with run($app); this replaces that child with `bridge serve`
# running the suite's own app (t/apps/plack-suite.psgi) in the Perl runner,
# on the HTTP front at the port the suite chose. Test::TCP stops the child
# with SIGTERM, which bridge answers with a graceful shutdown.
use strict;
use warnings;
use File::Basename qw(dirname);
use File::Spec;

sub new {
    my ($class, %args) = @_;
    return bless {%args}, $class;
}

sub run {
    my ($self, $app) = @_;    # $app is rebuilt by the runner from the .psgi
    my $bin = $ENV{BRIDGE_BIN}
        or die "BRIDGE_BIN is not set: build bridge (make build) and point BRIDGE_BIN at bin/bridge\n";
    my $psgi = File::Spec->rel2abs(File::Spec->catfile(dirname(__FILE__), '..', '..', '..', 'apps', 'plack-suite.psgi'));
    my @front = $self->{uwsgi} ? ('--uwsgi', "$self->{host}:$self->{port}") : ('--http', "$self->{host}:$self->{port}");
    # bridge's log (app errors the suite provokes on purpose, access lines)
    # goes to BRIDGE_SUITE_LOG, so prove's output stays the suite's own.
    my $log = $ENV{BRIDGE_SUITE_LOG} || '/dev/null';
    open STDERR, '>>', $log or die "open $log: $!\n";
    exec $bin, 'serve', '--runner', "perl:$psgi", @front,
        '--workers', '1'
        or die "exec $bin: $!\n";
}

1;
