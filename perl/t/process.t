# The real runner process: start-up contract, go-plugin's services, and
# bridge.v1.Runner over gRPC on its unix socket, with a Perl gRPC client
# (t/lib/GRPCClient.pm on Protocol::HTTP2::Client). The app is
# t/apps/fixture.psgi. Every wait is bounded; only processes started here
# are signalled.
use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use File::Temp qw(tempdir);
use IO::Select;
use POSIX ();
use Time::HiRes qw(time sleep);
use JSON::PP ();
use GRPCClient;
use Frames qw(request_bytes encode_request decode_response);
use Bridge::Runner::Proto;

my $RUNNER = "$FindBin::Bin/../bin/bridge-psgi-runner";
my $APP    = "$FindBin::Bin/apps/fixture.psgi";
my @started;

# Starts the runner; returns { pid, dir, out (its stdout), log (stderr file), handshake }.
sub start_runner {
    my (%o) = @_;
    my $dir = tempdir(CLEANUP => 1);
    pipe(my $r, my $w) or die "pipe: $!";
    my $pid = fork // die "fork: $!";
    if (!$pid) {
        close $r;
        open STDOUT, '>&', $w or die;
        open STDERR, '>', "$dir/stderr.log" or die;
        open STDIN, '<', '/dev/null' or die;
        $ENV{BRIDGE_PLUGIN}            = 'runner-v1';
        $ENV{PLUGIN_PROTOCOL_VERSIONS} = '1';
        $ENV{PLUGIN_UNIX_SOCKET_DIR}   = $dir;
        $ENV{BRIDGE_THREADS}           = 2;
        $ENV{BRIDGE_WORKERS}           = 2;
        $ENV{BRIDGE_WORKER}            = 'w1';
        $ENV{BRIDGE_TEST_DIR}          = $dir;
        $ENV{PERL5LIB}                 = join ':', "$FindBin::Bin/../lib", $ENV{PERL5LIB} // ();
        delete $ENV{BRIDGE_LOG_LEVEL};
        %ENV = (%ENV, %{ $o{env} || {} });
        delete $ENV{$_} for @{ $o{unset} || [] };
        chdir($o{chdir} // "$FindBin::Bin/apps");
        exec $^X, $RUNNER, '--app', $o{app} // $APP, @{ $o{args} || [] };
        die "exec: $!";
    }
    close $w;
    push @started, $pid;
    my $p = { pid => $pid, dir => $dir, out => $r };
    if (IO::Select->new($r)->can_read(20)) {
        $p->{handshake} = <$r>;
    }
    return $p;
}

sub socket_of { (split /\|/, $_[0]{handshake} // '')[3] }

# Waits up to $t seconds for the process to exit; its status, or undef.
sub wait_exit {
    my ($p, $t) = @_;
    my $end = time + ($t // 10);
    while (time < $end) {
        my $r = waitpid($p->{pid}, POSIX::WNOHANG());
        if ($r == $p->{pid}) {
            @started = grep { $_ != $p->{pid} } @started;
            return $?;
        }
        sleep 0.05;
    }
    return undef;
}

sub log_records {
    my $p = shift;
    open my $fh, '<', "$p->{dir}/stderr.log" or return ();
    my @r;
    while (my $line = <$fh>) {
        my $rec = eval { JSON::PP->new->decode($line) };
        push @r, $rec ? $rec : { plain => $line };
    }
    return @r;
}

sub slot_request {
    my ($c, $st, %r) = @_;
    $c->send_msg($st, request_bytes(%r));
    my @frames;
    while (1) {
        my $m = $c->next_msg($st, 10);
        last unless defined $m;
        my $f = decode_response($m);
        push @frames, $f;
        last if $f->{end};
    }
    return @frames;
}

sub body_of { join '', map { $_->{body} // '' } @_ }

END {
    # Anything a failed test left running: only our own children.
    for my $pid (@started) { kill 'KILL', $pid; waitpid $pid, 0 }
}

# runners/CONTRACT.md "Start-up": the same checks, in the same words, in
# every shim: one error line, exit 1, nothing on stdout.
for my $case (
    [ 'no cookie', { unset => ['BRIDGE_PLUGIN'] },
        'bridge-psgi-runner is a bridge runner plugin, started by bridge; BRIDGE_PLUGIN is not runner-v1' ],
    [ 'a wrong cookie', { env => { BRIDGE_PLUGIN => 'runner-v2' } },
        'bridge-psgi-runner is a bridge runner plugin, started by bridge; BRIDGE_PLUGIN is not runner-v1' ],
    [ 'protocol versions without 1', { env => { PLUGIN_PROTOCOL_VERSIONS => '2,3' } },
        'PLUGIN_PROTOCOL_VERSIONS is 2,3: this runner speaks protocol version 1 only' ],
    [ 'no socket directory', { unset => ['PLUGIN_UNIX_SOCKET_DIR'] },
        "PLUGIN_UNIX_SOCKET_DIR is not set: bridge names the directory for the runner's socket" ],
    [ 'BRIDGE_GRACE not a Go duration', { env => { BRIDGE_GRACE => '30' } },
        'BRIDGE_GRACE=30 is not a duration such as 30s, 1m30s or 500ms' ],
    [ 'a negative BRIDGE_GRACE', { env => { BRIDGE_GRACE => '-1s' } },
        'BRIDGE_GRACE=-1s is not a duration such as 30s, 1m30s or 500ms' ],
    [ '--grace not a Go duration', { args => [ '--grace', '0.5' ] },
        '--grace=0.5 is not a duration such as 30s, 1m30s or 500ms' ],
) {
    my ($name, $opts, $message) = @$case;
    subtest "refuses to start: $name" => sub {
        my $p = start_runner(%$opts);
        ok !defined $p->{handshake}, 'no handshake';
        is wait_exit($p) >> 8, 1, 'exit 1';
        is_deeply [ map { [ $_->{level}, $_->{message} ] } log_records($p) ], [ [ error => $message ] ],
          'one error line';
    };
}

subtest 'protocol versions that include 1 and BRIDGE_GRACE as a Go duration are accepted' => sub {
    my $p = start_runner(env => { PLUGIN_PROTOCOL_VERSIONS => '3,1', BRIDGE_GRACE => '1m30s' });
    like $p->{handshake}, qr/^1\|1\|unix\|/, 'handshake';
    kill 'TERM', $p->{pid};
    is wait_exit($p, 10), 0, 'exit 0';
};

subtest 'an app that fails to load: one error line, exit 1, no handshake (G24)' => sub {
    my $dir = tempdir(CLEANUP => 1);
    open my $fh, '>', "$dir/broken.psgi" or die;
    print $fh "print qq{junk on stdout\\n};\nmy \$app = sub { [200, [], []] ;\n";
    close $fh;
    my $p = start_runner(app => "$dir/broken.psgi");
    ok !defined $p->{handshake}, 'nothing on stdout, not even what the app printed';
    is wait_exit($p) >> 8, 1, 'exit 1';
    my @errors = grep { ($_->{level} // '') eq 'error' } log_records($p);
    is scalar @errors, 1, 'one error line';
    like $errors[0]{message}, qr{^cannot load \S*broken\.psgi: .*syntax error|^cannot load \S*broken\.psgi: Missing right curly}, 'cannot load app.psgi: <reason>';
    like $errors[0]{traceback}, qr/broken\.psgi line \d/, 'details in traceback';

    open $fh, '>', "$dir/notcode.psgi" or die;
    print $fh "42;\n";
    close $fh;
    $p = start_runner(app => "$dir/notcode.psgi");
    is wait_exit($p) >> 8, 1, 'an app file that returns no code ref: exit 1';
    like((grep { ($_->{level} // '') eq 'error' } log_records($p))[0]{message}, qr/did not return a code reference/, 'says so');
};

my $p = start_runner();
like $p->{handshake}, qr{^1\|1\|unix\|\Q$p->{dir}\E/bridge-psgi-\d+\.sock\|grpc\n\z}, 'handshake line, first on stdout';
my $c = GRPCClient->new(socket_of($p));

subtest 'G7 the app printing during load and requests never reaches stdout' => sub {
    my @frames = slot_request($c, $c->open_stream('/bridge.v1.Runner/Slot'), path => '/print', rid => 'rid-print');
    is body_of(@frames), 'unchanged', 'response unchanged';
    ok !IO::Select->new($p->{out})->can_read(0.2) || !defined readline($p->{out}), 'nothing more on the handshake pipe';
    my ($loading) = grep { ($_->{message} // '') eq 'fixture loading' } log_records($p);
    is $loading->{stream}, 'stdout', 'a print while loading is a log record, not a line before the handshake';
    my @recs = grep { ($_->{request_id} // '') eq 'rid-print' } log_records($p);
    my %by;
    push @{ $by{ $_->{stream} // 'none' } }, $_->{message} for @recs;
    is_deeply $by{stdout}, [ 'HTTP/1.1 200 OK', 'printed to stdout' ], 'print STDOUT -> stream stdout, a record per line';
    is_deeply $by{stderr}, ['a warning from the app'], 'warn -> stream stderr';
    is_deeply $by{errors}, ['to psgi.errors'], 'psgi.errors -> stream errors';
    is_deeply $by{logger}, ['via psgix.logger'], 'psgix.logger -> stream logger';
    is $_->{runner}, 'psgi', 'runner psgi' for @recs;
    is $_->{pid}, $p->{pid}, 'pid' for @recs;
};

subtest 'go-plugin services' => sub {
    my ($msg, $t) = $c->unary('/grpc.health.v1.Health/Check', "\x0a\x06plugin");
    is unpack('H*', $msg), '0801', 'health: SERVING';
    is $t->{'grpc-status'}, 0, 'grpc-status 0';
    my $st = $c->open_stream('/plugin.GRPCStdio/StreamStdio');
    $c->send_msg($st, '', 1);
    $c->wait_for(sub { $st->{trailers} }, 10, 'StreamStdio trailers');
    is $st->{trailers}{'grpc-status'}, 0, 'StreamStdio: an empty stream';
    is scalar @{ $st->{messages} }, 0, '... with no messages';
    ($msg, $t) = $c->unary('/plugin.GRPCBroker/StartStream', '');
    is $t->{'grpc-status'}, 12, 'broker: UNIMPLEMENTED';
};

# Describe's reply as a hash; running (repeated) as an array.
sub describe {
    my $c = shift;
    my ($msg) = $c->unary('/bridge.v1.Runner/Describe', '');
    my %d = (running => []);
    Bridge::Runner::Proto::_each_field(\$msg, sub {
        my ($num, $v) = @_;
        return push @{ $d{running} }, $v if $num == 8;
        $d{ (qw(x language language_version interface app threads pid server running slots))[$num] } = $v;
    });
    return \%d;
}

subtest 'Describe' => sub {
    my %d = %{ describe($c) };
    is $d{language}, 'perl', 'language';
    is $d{language_version}, sprintf('%vd', $^V), 'language_version';
    is $d{interface}, 'psgi/1.1', 'interface';
    is $d{app}, $APP, 'app';
    is $d{threads}, 1, 'threads 1 although 2 were asked for';
    is $d{slots}, 2, 'slots: one per thread asked for, without BRIDGE_SLOTS';
    is $d{pid}, $p->{pid}, 'pid';
    like $d{server}, qr{^bridge-psgi/0\.1 Protocol::HTTP2/1\.\d+$}, 'server';
    is_deeply $d{running}, [], 'running: none while idle';
};

subtest 'requests one after another on one Slot stream' => sub {
    my $st = $c->open_stream('/bridge.v1.Runner/Slot');
    my @f = slot_request($c, $st, path => '/hello');
    is scalar @f, 1, 'hello world: one frame';
    is $f[0]{head}{status}, 200, 'status';
    is body_of(@f), 'hello world', 'body';
    @f = slot_request($c, $st, path => '/hello');
    is body_of(@f), 'hello world', 'second request on the same stream';

    @f = slot_request($c, $st, path => '/stream');
    is scalar @f, 5, 'streaming writer: head, three chunks, end';
    ok $f[0]{head} && !defined $f[0]{body}, 'head first, alone';
    is_deeply [ map { $_->{body} } @f[ 1 .. 3 ] ], [ map { "data: $_\n\n" } 1 .. 3 ], 'one frame per write';
    ok $f[4]{end} && !$f[4]{abort}, 'clean end';

    @f = slot_request($c, $st, path => '/die');
    is scalar @f, 1, 'app die: one frame';
    ok !$f[0]{head}, 'no head';
    is $f[0]{error}{kind}, 'app', 'Error.kind app';
    is $f[0]{error}{message}, 'boom from the fixture app', 'message for the log';
    ok $f[0]{end} && !$f[0]{abort}, '{error, end}';

    @f = slot_request($c, $st, path => '/die-after');
    ok $f[0]{head}, 'head first';
    ok $f[-1]{error} && $f[-1]{end} && $f[-1]{abort}, 'then {error, end, abort}';

    my $body = join '', map { chr(($_ * 7) % 256) } 1 .. 300_000;
    my @vars = ([ REQUEST_METHOD => 'POST' ], [ SCRIPT_NAME => '' ], [ PATH_INFO => '/echo' ], [ QUERY_STRING => '' ],
        [ SERVER_NAME => 'x' ], [ SERVER_PORT => '80' ], [ CONTENT_LENGTH => length $body ]);
    $c->send_msg($st, encode_request({ head => { request_id => 'post', vars => \@vars, content_length => length $body },
        body => substr($body, 0, 100_000) }));
    $c->send_msg($st, encode_request({ body => substr($body, 100_000, 100_000) }));
    $c->send_msg($st, encode_request({ body => substr($body, 200_000) }));
    $c->send_msg($st, encode_request({ end => 1 }));
    my @out;
    while (my $m = $c->next_msg($st, 10)) { push @out, decode_response($m); last if $out[-1]{end} }
    ok body_of(@out) eq $body, 'a 300 kB body in three frames, echoed';

    @f = slot_request($c, $st, path => '/hello');
    is body_of(@f), 'hello world', 'the stream still serves';
};

subtest 'two slots: served one at a time, in arrival order' => sub {
    my $a = $c->open_stream('/bridge.v1.Runner/Slot');
    my $b = $c->open_stream('/bridge.v1.Runner/Slot');
    my $t0 = time;
    $c->send_msg($a, request_bytes(path => '/sleep', query => '0.5'));
    $c->pump(0.05);
    $c->send_msg($b, request_bytes(path => '/hello'));
    $c->wait_for(sub { @{ $b->{messages} } }, 10, 'slot b');
    my $tb = time - $t0;
    ok @{ $a->{messages} }, 'slot a answered before slot b';
    cmp_ok $tb, '>=', 0.45, 'slot b waited for slot a (no concurrent app calls, psgi.multithread false)';
    is decode_response($a->{messages}[0])->{body}, 'slept', 'a';
    is decode_response($b->{messages}[0])->{body}, 'hello world', 'b';
};

subtest 'pipelined slots: six streams at once, one request each, served one at a time in arrival order' => sub {
    my $p = start_runner(env => { BRIDGE_THREADS => 1, BRIDGE_SLOTS => 6 });
    my $c = GRPCClient->new(socket_of($p));
    my %d = %{ describe($c) };
    is_deeply [ @d{qw(threads slots)} ], [ 1, 6 ], 'Describe: threads 1, slots 6';
    my @st = map { $c->open_stream('/bridge.v1.Runner/Slot') } 1 .. 6;
    # Sent together: five wait their turn while the first runs (50 ms).
    $c->send_msg($st[$_], request_bytes(path => '/turn', rid => "turn-$_")) for 0 .. 5;
    $c->wait_for(sub { !grep { !@{ $_->{messages} } } @st }, 10, 'six responses');
    my @f = map { decode_response($_->{messages}[0]) } @st;
    is_deeply [ map { $_->{body} } @f ], [ ('turned') x 6 ], 'all six complete';
    ok !(grep { !$_->{end} } @f), '... each with its end';
    open my $fh, '<', "$p->{dir}/turns.log" or die "no turns.log";
    chomp(my @log = <$fh>);
    is_deeply \@log, [ map { ("enter turn-$_", "leave turn-$_") } 0 .. 5 ], 'one at a time, first come first served';
    my ($serving) = grep { ($_->{message} // '') =~ /^serving / } log_records($p);
    is_deeply [ @$serving{qw(threads slots)} ], [ 1, 6 ], 'the start line says threads and slots';
    ok !(grep { ($_->{message} // '') =~ /asked for/ } log_records($p)), 'and nothing about them otherwise';
    kill 'TERM', $p->{pid};
    is wait_exit($p, 10), 0, 'exit 0';
};

subtest 'slots: below the threads or invalid means one per thread; past the bound the runner offers its bound' => sub {
    for my $slots ('1', 'many') {
        my $p = start_runner(env => { BRIDGE_THREADS => 3, BRIDGE_SLOTS => $slots });
        is describe(GRPCClient->new(socket_of($p)))->{slots}, 3, "BRIDGE_SLOTS=$slots with 3 threads: 3";
        my ($rec) = grep { ($_->{message} // '') =~ /threads asked for/ } log_records($p);
        like $rec->{message}, qr/one request at a time .* its 3 slots wait their turn/, 'threads > 1: still one at a time';
        kill 'TERM', $p->{pid};
        wait_exit($p, 10);
    }
    my $p = start_runner(env => { BRIDGE_SLOTS => 1000 });
    is describe(GRPCClient->new(socket_of($p)))->{slots}, 128, 'BRIDGE_SLOTS=1000: starts, and Describe offers 128';
    my @warn = grep { ($_->{level} // '') eq 'warn' } log_records($p);
    is scalar(@warn), 1, 'one warning';
    like $warn[0]{message}, qr/^1000 slots asked for: the PSGI runner serves at most 128 Slot streams .*; Describe offers 128$/,
      'says why and what it offers';
    kill 'TERM', $p->{pid};
    is wait_exit($p, 10), 0, 'exit 0';
};

subtest 'G4 G16 a request cancelled while it waits for the app thread never starts' => sub {
    my $a = $c->open_stream('/bridge.v1.Runner/Slot');
    my $b = $c->open_stream('/bridge.v1.Runner/Slot');
    $c->send_msg($a, request_bytes(path => '/sleep', query => '0.5'));
    $c->pump(0.05);
    $c->send_msg($b, request_bytes(path => '/touch', rid => 'queued-rid'));
    $c->pump(0.05);
    $c->cancel($b);
    is decode_response($c->next_msg($a, 10))->{body}, 'slept', 'the running request finishes';
    is body_of(slot_request($c, $a, path => '/hello')), 'hello world', 'and the loop goes on';
    ok !-e "$p->{dir}/touched", 'the cancelled one was never run';
    my ($rec) = grep { ($_->{message} // '') eq 'request cancelled before it started' } log_records($p);
    is $rec->{request_id}, 'queued-rid', 'logged with its request id';
};

subtest 'G4 a cancelled stream: the writer dies, the body closes, a new slot works' => sub {
    my $st = $c->open_stream('/bridge.v1.Runner/Slot');
    $c->send_msg($st, request_bytes(path => '/endless'));
    my $n = 0;
    $c->wait_for(sub { @{ $st->{messages} } >= 3 }, 10, 'three frames');
    $c->cancel($st);
    my $log = "$p->{dir}/endless.log";
    my $end = time + 5;
    sleep 0.05 until -s $log || time > $end;
    ok -s $log, 'the app saw its write die within a few seconds';
    open my $fh, '<', $log or die;
    like scalar(<$fh>), qr/write died: the client went away/, 'with the disconnect error (P18)';
    my $new = $c->open_stream('/bridge.v1.Runner/Slot');
    is body_of(slot_request($c, $new, path => '/hello')), 'hello world', 'a fresh slot is served';
    my @recs = grep { ($_->{message} // '') eq 'request cancelled' } log_records($p);
    is $recs[0]{level}, 'info', 'logged at info, not as an app error';
};

subtest 'Describe lists the request in the app while it streams, until the app lets go' => sub {
    my $st = $c->open_stream('/bridge.v1.Runner/Slot');
    $c->send_msg($st, request_bytes(path => '/endless', rid => 'rid-streaming'));
    $c->wait_for(sub { @{ $st->{messages} } >= 2 }, 10, 'two frames');
    # Answered from the loop that the app's write() pumps.
    is_deeply describe($c)->{running}, ['rid-streaming'], 'running: the streaming request';
    $c->cancel($st);
    my $log = "$p->{dir}/endless.log";
    my $end = time + 5;
    sleep 0.05 until _lines($log) >= 2 || time > $end;
    is _lines($log), 2, 'the app saw its write die';
    is_deeply describe($c)->{running}, [], 'running: empty once the app returned';
};

sub _lines { open my $fh, '<', shift or return 0; my @l = <$fh>; scalar @l }

subtest 'SIGUSR1 while the app runs logs a stack with the app frame' => sub {
    my $st = $c->open_stream('/bridge.v1.Runner/Slot');
    $c->send_msg($st, request_bytes(path => '/sleep', query => '2', rid => 'rid-usr1'));
    $c->pump(0.3);
    my $t0 = time;
    kill 'USR1', $p->{pid};
    my $f = decode_response($c->next_msg($st, 10));
    is $f->{body}, 'slept', 'the request still completes';
    cmp_ok time - $t0, '>=', 1.5, '... in its own time: the handler does not end the app call';
    my ($rec) = grep { ($_->{message} // '') eq 'stack dump (SIGUSR1)' } log_records($p);
    ok $rec, 'a stack dump line' or return diag explain [log_records($p)];
    is $rec->{request_id}, 'rid-usr1', 'with the id of the request in the app';
    like $rec->{traceback}, qr{\ASIGUSR1 at \S*/fixture\.psgi line \d+\.\n}, 'where the app was (its sleep)';
    like $rec->{traceback}, qr{Bridge::Runner::PSGI::run_app\(.*\n(?s:.*)Bridge::Runner::Main::main\(}, 'and the frames below it';
};

subtest 'a slot the client half-closes is ended cleanly' => sub {
    my $st = $c->open_stream('/bridge.v1.Runner/Slot');
    is body_of(slot_request($c, $st, path => '/hello')), 'hello world', 'served';
    $c->half_close($st);
    $c->wait_for(sub { $st->{trailers} }, 10, 'trailers');
    is $st->{trailers}{'grpc-status'}, 0, 'grpc-status 0';
};

subtest 'File frames for real files (G23)' => sub {
    open my $fh, '>', "$p->{dir}/file.txt" or die;
    print $fh "file body\n";
    close $fh;
    my @f = slot_request($c, $c->open_stream('/bridge.v1.Runner/Slot'), path => '/file');
    is $f[0]{file}{path}, "$p->{dir}/file.txt", 'path';
    ok !$f[0]{file}{offset}, 'offset 0';
    is $f[0]{file}{length}, 10, 'length';
};

subtest 'Shutdown: reply, then exit 0' => sub {
    my ($msg, $t) = $c->unary('/plugin.GRPCController/Shutdown', '');
    is $t->{'grpc-status'}, 0, 'empty reply';
    is wait_exit($p, 10), 0, 'exit 0';
    ok !-e socket_of($p), 'socket removed';
};

subtest 'G25 SIGTERM: the request in flight finishes, then exit 0' => sub {
    my $p = start_runner();
    my $c = GRPCClient->new(socket_of($p));
    my $st = $c->open_stream('/bridge.v1.Runner/Slot');
    $c->send_msg($st, request_bytes(path => '/sleep', query => '0.5'));
    $c->pump(0.2);
    kill 'TERM', $p->{pid};
    my $m = $c->next_msg($st, 10);
    is decode_response($m)->{body}, 'slept', 'response delivered';
    is wait_exit($p, 10), 0, 'exit 0';
};

subtest 'X4 harakiri: response, cleanup, exit 0' => sub {
    my $p = start_runner();
    my $c = GRPCClient->new(socket_of($p));
    my @f = slot_request($c, $c->open_stream('/bridge.v1.Runner/Slot'), path => '/harakiri');
    is body_of(@f), 'bye', 'response delivered';
    ok $f[-1]{end} && $f[-1]{retire}, 'the end frame says the runner retires';
    is wait_exit($p, 10), 0, 'exit 0';
    open my $fh, '<', "$p->{dir}/cleanup.log" or die "no cleanup.log";
    is scalar(<$fh>), "cleanup ran\n", 'cleanup handler ran first';
};

subtest 'G25 the shutdown grace runs out: the app call is interrupted, its response fails, exit 0' => sub {
    my $p = start_runner(env => { BRIDGE_GRACE => '500ms' });
    my $c = GRPCClient->new(socket_of($p));
    my $st = $c->open_stream('/bridge.v1.Runner/Slot');
    $c->send_msg($st, request_bytes(path => '/sleep', query => '5'));
    $c->pump(0.2);
    my $t0 = time;
    kill 'TERM', $p->{pid};
    my $f = decode_response($c->next_msg($st, 10));
    ok $f->{error} && $f->{end} && !$f->{head}, 'an error frame before the head';
    cmp_ok time - $t0, '<', 3, 'well before the app would have finished';
    is wait_exit($p, 10), 0, 'exit 0';
};

done_testing;
