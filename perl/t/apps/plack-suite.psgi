# The app Plack::Test::Suite->run_server_tests runs, rebuilt inside the
# bridge runner: every case's app, picked by the X-Plack-Test header, wrapped
# in Plack::Middleware::Lint exactly as the suite wraps it (P25).
use strict;
use warnings;
use Plack::Test::Suite;
use Plack::Middleware::Lint;

Plack::Middleware::Lint->wrap(Plack::Test::Suite->test_app_handler);
