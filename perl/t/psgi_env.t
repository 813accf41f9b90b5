# The env a PSGI app gets (P1-P10, X1-X6, G17-G19), checked through
# Bridge::Runner::PSGI with the request frames Go would send.
use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use Plack::Middleware::Lint;
use TestPSGI;
use FakeSlot qw(request_frames);

my $seen;
my $keep = sub { $seen = shift; [ 200, [ 'Content-Type' => 'text/plain' ], ['ok'] ] };

subtest 'P1 P8 G17 psgi keys, a fresh env per request' => sub {
    my $res = run_request(Plack::Middleware::Lint->wrap($keep), _psgi => { workers => 3 });
    is $res->{status}, 200, 'Lint is happy with the env (P25)';
    my $env = $seen;
    is_deeply $env->{'psgi.version'}, [ 1, 1 ], 'psgi.version [1,1]';
    is $env->{'psgi.url_scheme'}, 'http', 'url_scheme';
    ok exists $env->{"psgi.$_"}, "psgi.$_ present" for qw(input errors multithread multiprocess run_once nonblocking streaming);
    ok !$env->{'psgi.multithread'}, 'multithread false (one app call at a time)';
    ok $env->{'psgi.multiprocess'}, 'multiprocess true with BRIDGE_WORKERS > 1';
    ok !$env->{'psgi.run_once'}, 'run_once false';
    ok !$env->{'psgi.nonblocking'}, 'nonblocking false';
    ok $env->{'psgi.streaming'}, 'streaming true';
    $env->{'psgi.version'}[0] = 99;
    $env->{MUTATED} = 1;
    run_request($keep, _psgi => { workers => 1 });
    isnt $seen, $env, 'a fresh hashref';
    ok !exists $seen->{MUTATED}, 'no leak from the previous request (G18)';
    is_deeply $seen->{'psgi.version'}, [ 1, 1 ], 'psgi.version not shared';
    ok !$seen->{'psgi.multiprocess'}, 'multiprocess false with one worker';
    isnt $seen->{'psgi.errors'}, $env->{'psgi.errors'}, 'psgi.errors is per request (G18)';
};

subtest 'P2 P4 P5 P6 P7 CGI values are bytes, copied as sent' => sub {
    run_request($keep,
        method  => 'GET', path => '/caf%C3%A9/x%252cy', query => 'a=%C3%A9&b',
        headers => [ 'X-Bin' => "\xe9\xff", Foo => 'bar', Foo => 'baz', Cookie => 'a=1', Cookie => 'b=2' ]);
    is $seen->{PATH_INFO}, "/caf\xc3\xa9/x%2cy", 'PATH_INFO decoded once, raw bytes (P4, PS13, PS14)';
    ok !utf8::is_utf8($seen->{PATH_INFO}), 'no UTF-8 flag (P2)';
    is $seen->{REQUEST_URI}, '/caf%C3%A9/x%252cy?a=%C3%A9&b', 'REQUEST_URI raw';
    is $seen->{QUERY_STRING}, 'a=%C3%A9&b', 'QUERY_STRING raw (P5)';
    is $seen->{SCRIPT_NAME}, '', "SCRIPT_NAME '' at the root";
    is $seen->{HTTP_X_BIN}, "\xe9\xff", 'header bytes as sent';
    is $seen->{HTTP_FOO}, 'bar, baz', 'repeated headers joined with ", " (P7)';
    is $seen->{HTTP_COOKIE}, 'a=1; b=2', 'Cookie joined with "; "';
    ok !exists $seen->{$_}, "no $_ (P6)" for qw(HTTP_CONTENT_TYPE HTTP_CONTENT_LENGTH CONTENT_LENGTH CONTENT_TYPE COOKIE);
    ok !utf8::is_utf8($seen->{$_}), "$_ is bytes" for grep { !/\./ } keys %$seen;
};

subtest 'P9 X1 psgi.input: buffered, seekable, read with offsets, no blocking' => sub {
    my $body = 'abcdefgh' x 12000;    # PS04's 96 000 bytes
    my ($got, $again, $eof1, $eof2, $pos);
    my $app = sub {
        my $env = shift;
        my $in  = $env->{'psgi.input'};
        my $buf = '';
        while (1) {
            my $n = $in->read($buf, 7000, length $buf);
            last unless $n;
        }
        $got  = $buf;
        $eof1 = $in->read(my $x, 10);
        $eof2 = $in->read($x, 10);
        ok $env->{'psgix.input.buffered'}, 'psgix.input.buffered true (X1)';
        $in->seek(0, 0);
        $pos = $in->tell;
        $in->read($again, 8);
        [ 200, [], [] ];
    };
    run_request($app, method => 'POST', body => $body, headers => [ 'Content-Type' => 'application/octet-stream' ],
        chunks => [ unpack '(a65536)*', $body ]);
    is length $got, 96000, 'all bytes';
    ok $got eq $body, 'same bytes, in order, over several body frames';
    is $eof1, 0, 'read returns 0 at EOF';
    is $eof2, 0, '... and on every later call';
    is $pos, 0, 'seek back to 0';
    is $again, 'abcdefgh', 'read again after seek';
};

subtest 'X1 bodies past 1 MiB go to a temp file and stay seekable' => sub {
    my $body = join '', map { sprintf "%07d\n", $_ } 1 .. 200_000;    # 1.6 MB
    my ($len, $first, $last, $real);
    my $app = sub {
        my $in = shift->{'psgi.input'};
        $real  = defined fileno($in) && fileno($in) >= 0;
        local $/;
        my $all = <$in>;
        $len   = length $all;
        $in->seek(-8, 2);
        $in->read($last, 8);
        $in->seek(0, 0);
        $in->read($first, 8);
        [ 200, [], [] ];
    };
    run_request($app, method => 'PUT', body => $body, chunks => [ unpack '(a262144)*', $body ]);
    is $len, length $body, 'whole body';
    ok $real, 'a real file handle';
    is $first, "0000001\n", 'seek to the start';
    is $last, "0200000\n", 'seek from the end';
};

subtest 'P9 input never holds more than the declared length; streamed bodies run to end' => sub {
    my $got;
    my $app = sub { my $in = shift->{'psgi.input'}; local $/; $got = <$in>; [ 200, [], [] ] };
    my @frames = request_frames(method => 'POST', body => 'hello');
    $frames[-1]{body} = 'EXTRA';
    run_request($app, _frames => \@frames);
    is $got, 'hello', 'bytes past content_length dropped';
    run_request($app, method => 'POST', body => 'chunked body', streamed => 1, chunks => [ 'chunked', ' body' ]);
    is $got, 'chunked body', 'content_length -1: read until end';
};

subtest 'request cancelled while its body arrives: the app is not called' => sub {
    my $called = 0;
    my @frames = request_frames(method => 'POST', body => 'x' x 10, chunks => [ 'x' x 5, 'x' x 5 ]);
    pop @frames;    # no end: the stream ends (next_frame gives undef)
    pop @frames;
    my ($logs, $res, $result) = capture_logs(sub { run_request(sub { $called++; [ 200, [], [] ] }, _frames => \@frames) });
    ok $result->{gone}, 'reported as gone';
    ok grep({ $_->{level} eq 'info' && $_->{message} =~ /cancelled/ } @$logs), 'logged at info (G4)';
    is $called, 0, 'app not called';
    is $res->{frames}, 0, 'nothing sent';
};

subtest 'a body that cannot be buffered: an input error, the app is not called' => sub {
    my $called = 0;
    my $body   = 'z' x ((1 << 20) + 10);
    my ($res, $result) = run_request(sub { $called++; [ 200, [], [] ] },
        method => 'POST', body => $body, chunks => [ substr($body, 0, 1 << 20), substr($body, 1 << 20) ],
        _psgi => { input_dir => '/nonexistent/dir' });
    is $called, 0, 'app not called';
    ok !defined $res->{status}, 'no head';
    is $res->{error}{kind}, 'input', 'Error.kind input';
    like $res->{error}{message}, qr/cannot buffer the request body/, 'says why';
    ok $res->{end}, 'end (Go answers 500)';
};

subtest 'P5 url_scheme https, G19 bridge.request_id' => sub {
    run_request($keep, scheme => 'https', rid => 'req-42');
    is $seen->{'psgi.url_scheme'}, 'https', 'https';
    is $seen->{'bridge.request_id'}, 'req-42', 'bridge.request_id';
};

subtest 'X2 X6 keys the server never sets; X3 X4 X5 the ones it does' => sub {
    run_request($keep);
    ok !exists $seen->{$_}, "no $_" for qw(psgix.io psgix.session psgix.session.options psgix.informational);
    ok $seen->{'psgix.cleanup'}, 'psgix.cleanup true (X3)';
    is ref $seen->{'psgix.cleanup.handlers'}, 'ARRAY', 'psgix.cleanup.handlers arrayref';
    is scalar @{ $seen->{'psgix.cleanup.handlers'} }, 0, '... empty';
    ok $seen->{'psgix.harakiri'}, 'psgix.harakiri true: bridge restarts a worker that exits (X4)';
    is ref $seen->{'psgix.logger'}, 'CODE', 'psgix.logger coderef (X5)';
    my @p = grep { /^psgix?\./ } sort keys %$seen;
    is_deeply \@p, [ sort qw(psgi.version psgi.url_scheme psgi.input psgi.errors psgi.multithread psgi.multiprocess
          psgi.run_once psgi.nonblocking psgi.streaming psgix.input.buffered psgix.cleanup psgix.cleanup.handlers
          psgix.harakiri psgix.logger) ], 'exactly the documented psgi/psgix keys (X2: nothing invented)';
};

subtest 'X3 cleanup handlers run after the response, in order, errors logged' => sub {
    my @order;
    my ($logs) = capture_logs(sub {
        run_request(sub {
            my $env = shift;
            push @{ $env->{'psgix.cleanup.handlers'} }, sub { push @order, 'first:' . ref shift },
              sub { die "cleanup boom\n" }, sub { push @order, 'third' };
            sub {
                my $w = shift->([ 200, [] ]);
                $w->write('x');
                push @order, 'response';
                $w->close;
            };
        });
    });
    is_deeply \@order, [ 'response', 'first:HASH', 'third' ], 'after the response, push order, with $env';
    ok grep({ $_->{level} eq 'error' && $_->{message} =~ /cleanup handler: cleanup boom/ } @$logs), 'exception logged';
};

subtest 'X4 harakiri.commit is reported after the response and cleanup' => sub {
    my @order;
    my ($res, $result) = run_request(sub {
        my $env = shift;
        $env->{'psgix.harakiri.commit'} = 1;
        push @{ $env->{'psgix.cleanup.handlers'} }, sub { push @order, 'cleanup' };
        [ 200, [], ['bye'] ];
    });
    is $res->{body}, 'bye', 'response sent';
    ok $result->{harakiri}, 'harakiri reported to the slot loop';
    is_deeply \@order, ['cleanup'], 'cleanup ran first';
    ($res, $result) = run_request($keep);
    ok !$result->{harakiri}, 'no harakiri unless committed';
};

subtest 'P10 X5 G8 psgi.errors and psgix.logger become log records with the request id' => sub {
    my ($logs) = capture_logs(sub {
        run_request(sub {
            my $env = shift;
            my $ok = $env->{'psgi.errors'}->print("line one\nline ", "two\n");
            print { $env->{'psgi.errors'} } "partial";
            $env->{'psgix.logger'}->({ level => 'debug', message => 'dbg' });
            $env->{'psgix.logger'}->({ level => 'warn',  message => 'careful' });
            $env->{'psgix.logger'}->({ level => 'bogus', message => 'odd level' });
            [ 200, [], [ $ok ? 'true' : 'false' ] ];
        }, rid => 'rid-log');
    });
    my @errors = grep { ($_->{stream} // '') eq 'errors' } @$logs;
    is_deeply [ map { $_->{message} } @errors ], [ 'line one', 'line two', 'partial' ],
      'one record per line; a partial line at the request end';
    is $_->{request_id}, 'rid-log', 'request id on psgi.errors records' for @errors;
    my @logger = grep { ($_->{stream} // '') eq 'logger' } @$logs;
    is_deeply [ map { [ $_->{level}, $_->{message} ] } @logger ],
      [ [ debug => 'dbg' ], [ warn => 'careful' ], [ error => 'odd level' ] ], 'levels kept; unknown is error (X5)';
    is $_->{request_id}, 'rid-log', 'request id on logger records' for @logger;
};

done_testing;
