# JSON log lines (G8, CONTRACT "Logs") and the handles that feed them:
# STDOUT/STDERR (G7), psgi.errors (P10), psgix.logger (X5).
use strict;
use warnings;
use Test::More;
use FindBin;
use JSON::PP ();
use IPC::Open3 ();
use Symbol ();
use File::Temp ();
BEGIN { $ENV{BRIDGE_LOG_MAX_LINE} = 300; delete $ENV{BRIDGE_LOG_LEVEL} }
use Bridge::Runner::Log;

# The log writes with syswrite, so it goes to a real (temporary) file here.
my $tmp = File::Temp->new;
open my $logfh, '+>', $tmp->filename or die;
Bridge::Runner::Log::output($logfh);
my $json = JSON::PP->new->utf8;
my $buf;

sub records {
    sysseek $logfh, 0, 0;
    sysread $logfh, $buf, 1 << 20;
    truncate $logfh, 0;
    sysseek $logfh, 0, 0;
    return map { $json->decode($_) } grep { length } split /\n/, $buf;
}

subtest 'G8 one JSON object per line with the standard fields' => sub {
    Bridge::Runner::Log::log(info => 'hello', extra => 'x', skipped => undef);
    my ($r) = records();
    is $r->{level}, 'info', 'level';
    is $r->{message}, 'hello', 'message';
    is $r->{runner}, 'psgi', 'runner psgi';
    is $r->{pid}, $$, 'pid';
    like $r->{ts}, qr/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/, 'ts';
    is $r->{extra}, 'x', 'extra field';
    ok !exists $r->{skipped}, 'undef fields left out';
    ok !exists $r->{request_id}, 'no request id outside a request';
    {
        local $Bridge::Runner::Log::REQUEST_ID = 'rid-9';
        Bridge::Runner::Log::log(warn => 'inside');
    }
    ($r) = records();
    is $r->{request_id}, 'rid-9', 'G19 the current request id';
    Bridge::Runner::Log::log(debug => 'hidden');
    is scalar(records()), 0, 'debug is below the default level';
};

subtest 'text: UTF-8 bytes, Latin-1 bytes and characters all give valid JSON' => sub {
    Bridge::Runner::Log::log(info => "caf\xc3\xa9");
    Bridge::Runner::Log::log(info => "caf\xe9");
    Bridge::Runner::Log::log(info => "snow \x{2603}");
    Bridge::Runner::Log::log(info => "ctl \x00\x1b");
    my @r = records();
    is $r[0]{message}, "caf\x{e9}", 'UTF-8 bytes decoded';
    is $r[1]{message}, "caf\x{e9}", 'invalid UTF-8 taken as Latin-1';
    is $r[2]{message}, "snow \x{2603}", 'characters kept';
    is $r[3]{message}, "ctl \x00\x1b", 'control characters escaped by JSON';
};

subtest 'G8 over-long lines are cut and marked' => sub {
    Bridge::Runner::Log::log(info => 'x' x 1000);
    my ($r) = records();
    is length $r->{message}, 300, 'cut at BRIDGE_LOG_MAX_LINE';
    ok $r->{truncated}, 'truncated: true';
};

subtest 'G7 G8 P10 line handles: records per line, partial lines kept until flush' => sub {
    require Symbol;
    my $fh = Symbol::gensym();
    tie *$fh, 'Bridge::Runner::Log::Stream', 'stdout', 'info', 'rid-s';
    print $fh "one\ntwo";
    print $fh " halves\r\n\n";
    printf $fh "%s-%d\n", 'fmt', 7;
    {
        local $, = '+';
        local $\ = "!\n";
        print $fh 'a', 'b';
    }
    syswrite $fh, "sysw\nrest", 5;
    print $fh 'pending';
    my @r = records();
    is_deeply [ map { $_->{message} } @r ], [ 'one', 'two halves', 'fmt-7', 'a+b!', 'sysw' ],
      'one record per line; CR and empty lines dropped; $, and $\ honoured';
    is $_->{stream}, 'stdout', 'stream' for @r;
    is $_->{request_id}, 'rid-s', 'request id' for @r;
    Bridge::Runner::Log::end_request();
    is_deeply [ map { $_->{message} } records() ], ['pending'], 'partial line flushed at the request end';
    print $fh 'y' x 700;
    my @cut = records();
    is scalar @cut, 2, 'a partial line over the limit is logged in pieces';
    ok $_->{truncated}, 'marked truncated' for @cut;
    Bridge::Runner::Log::end_request();
    is length((records())[0]{message}), 100, 'the rest at the request end';
    ok !close($fh) || 1, 'close is harmless';
    ok fileno($fh) == 1, 'fileno says stdout';
};

subtest 'X5 psgix.logger' => sub {
    my $logger = Bridge::Runner::Log::psgix_logger('rid-l');
    $logger->({ level => 'info', message => "with newline\n" });
    $logger->({ level => 'fatal', message => 'fatal one' });
    $logger->({ level => 'nonsense', message => 'odd' });
    $logger->({ message => 'no level' });
    my @r = records();
    is_deeply [ map { [ $_->{level}, $_->{message}, $_->{stream}, $_->{request_id} ] } @r ], [
        [ info => 'with newline', logger => 'rid-l' ],
        [ fatal => 'fatal one', logger => 'rid-l' ],
        [ error => 'odd', logger => 'rid-l' ],
        [ error => 'no level', logger => 'rid-l' ],
    ], 'levels as given, unknown ones as error';
};

subtest 'G7 capture_stdio: STDOUT, STDERR, warn and fd 1 all end on stderr' => sub {
    my $code = q{
        use Bridge::Runner::Log;
        Bridge::Runner::Log::capture_stdio();
        print "to stdout\n";
        print STDERR "to stderr\n";
        warn "a warning\n";
        $| = 1;
        system 'echo raw fd one';
        syswrite STDOUT, "sysw\n";
        Bridge::Runner::Log::end_request();
    };
    my $err = Symbol::gensym();
    my $pid = IPC::Open3::open3(my $in, my $out, $err, $^X, "-I$FindBin::Bin/../lib", '-e', $code);
    close $in;
    my $stdout = do { local $/; <$out> };
    my @lines  = <$err>;
    waitpid $pid, 0;
    is $stdout, '', 'nothing on stdout';
    my @recs  = map { eval { $json->decode($_) } || { plain => $_ } } @lines;
    my %by;
    push @{ $by{ $_->{stream} // 'plain' } }, $_->{message} // $_->{plain} for @recs;
    is_deeply $by{stdout}, [ 'to stdout', 'sysw' ], 'STDOUT prints are records with stream stdout';
    is_deeply $by{stderr}, [ 'to stderr', 'a warning' ], 'STDERR and warn are records with stream stderr';
    is_deeply $by{plain}, ["raw fd one\n"], "a child's fd 1 reaches stderr as a plain line";
};

done_testing;
