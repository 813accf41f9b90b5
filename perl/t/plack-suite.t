# PS01–PS36: Plack 1.0050's server test suite, run against bridge's HTTP
# front with the PSGI runner (docs/conformance.md "PS"). Needs the bridge binary:
# `make test` builds it and sets BRIDGE_BIN.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use File::Spec;
use Plack::Test::Suite;

# bridge's binary: $BRIDGE_BIN, else the repository's bin/bridge (`make build`).
my $bin = $ENV{BRIDGE_BIN} // "$FindBin::Bin/../../bin/bridge";
if (!-x $bin) {
    fail("BRIDGE_BIN ($bin) is not an executable bridge binary: run `make build` and set BRIDGE_BIN=bin/bridge");
    done_testing;
    exit;
}
$ENV{BRIDGE_BIN} = File::Spec->rel2abs($bin);

Plack::Test::Suite->run_server_tests('Bridge');
done_testing;
