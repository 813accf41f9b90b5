# Response forms and checks (P11-P16, P20-P24, G2, G3, G5, G9-G14, G23),
# through Bridge::Runner::PSGI and the real frame codec.
use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use File::Temp ();
use Plack::Middleware::Lint;
use Plack::Util;
use TestPSGI;
use FakeSlot;

sub app_returning { my $res = shift; sub { $res } }

subtest 'hello world is one frame: head, body and end (P14)' => sub {
    my $res = run_request(app_returning([ 200, [ 'Content-Type' => 'text/plain' ], [ 'hello ', '', 'world' ] ]));
    is $res->{frames}, 1, 'one frame';
    is $res->{status}, 200;
    is $res->{reason}, 'OK', 'reason from the table (P12, G9)';
    is $res->{body}, 'hello world', 'items joined, empty ones skipped';
    ok $res->{end} && !$res->{abort} && !$res->{error}, 'clean end';
    is FakeSlot::header($res, 'Content-Length'), 11, 'Content-Length added for an arrayref body (P21)';
};

subtest 'bodies over 1 MiB go in frames of at most 1 MiB' => sub {
    my $body = join '', map { chr(65 + $_ % 26) x 1000 } 1 .. 2600;    # 2.6 MB
    my ($res, $result, $slot) = run_request(app_returning([ 200, [], [ $body ] ]));
    my @f = $slot->sent;
    is scalar @f, 3, 'three frames';
    ok $f[0]{head} && !$f[1]{head} && !$f[2]{head}, 'the head with the first';
    is_deeply [ map { length $_->{body} } @f ], [ 1 << 20, 1 << 20, length($body) - 2 * (1 << 20) ], 'chunk sizes';
    ok !$f[0]{end} && !$f[1]{end} && $f[2]{end}, 'end with the last';
    ok $res->{body} eq $body, 'same bytes';
    cmp_ok $_->{_bytes}, '<', 4 << 20, 'each message under gRPC\'s 4 MiB limit' for @f;
};

subtest 'G9 reason phrases' => sub {
    my %want = (200 => 'OK', 404 => 'Not Found', 500 => 'Internal Server Error', 413 => 'Content Too Large',
        299 => '', 599 => '', 418 => '', 204 => 'No Content');
    for my $code (sort keys %want) {
        my $res = run_request(app_returning([ $code, [], [] ]));
        is $res->{reason}, $want{$code}, "$code '$want{$code}'";
    }
};

subtest 'P14 G21 bytes are sent untouched' => sub {
    my $res = run_request(app_returning([ 200, [], [ "Foo: Bar\r\n\r\nHello World", "\nBar\nBaz\0\xff" ] ]));
    is $res->{body}, "Foo: Bar\r\n\r\nHello World\nBar\nBaz\0\xff", 'CRLF, NUL and high bytes kept (PS30, PS31)';
};

subtest 'P13 header order kept, repeated names as separate lines (PS22)' => sub {
    my $res = run_request(app_returning([ 200, [ 'X-Foo' => 'a', 'Set-Cookie' => 'x=1', 'X-Foo' => 'b', 'x-lower' => 'c' ], ['x'] ]));
    is_deeply $res->{headers}, [ 'X-Foo' => 'a', 'Set-Cookie' => 'x=1', 'X-Foo' => 'b', 'x-lower' => 'c', 'Content-Length' => 1 ],
      'as given, case kept';
};

subtest 'G2 P13 G10 G11 invalid status or headers: an error frame, no head' => sub {
    my @bad = (
        [ 'status 99',             [ 99, [], [] ] ],
        [ 'status 1xx',            [ 103, [], [] ] ],
        [ 'status 1000',           [ 1000, [], [] ] ],
        [ 'status text',           [ '200 OK', [], [] ] ],
        [ 'odd headers',           [ 200, ['X-Foo'], [] ] ],
        [ 'headers not an array',  [ 200, { a => 1 }, [] ] ],
        [ 'name with space',       [ 200, [ 'X Foo' => 1 ], [] ] ],
        [ 'name with colon',       [ 200, [ 'X-Foo:' => 1 ], [] ] ],
        [ 'name ending in -',      [ 200, [ 'X-Foo-' => 1 ], [] ] ],
        [ 'name ending in _',      [ 200, [ 'X_Foo_' => 1 ], [] ] ],
        [ 'name starting digit',   [ 200, [ '1X' => 1 ], [] ] ],
        [ 'Status header',         [ 200, [ 'Status' => '200' ], [] ] ],
        [ 'CRLF injection (H16)',  [ 200, [ 'X-Foo' => "a\r\nSet-Cookie: x=1" ], [] ] ],
        [ 'LF in value',           [ 200, [ 'X-Foo' => "a\nb" ], [] ] ],
        [ 'NUL in value',          [ 200, [ 'X-Foo' => "a\0b" ], [] ] ],
        [ 'TAB in value (Lint)',   [ 200, [ 'X-Foo' => "a\tb" ], [] ] ],
        [ 'DEL in value',          [ 200, [ 'X-Foo' => "a\x7fb" ], [] ] ],
        [ 'undef value',           [ 200, [ 'X-Foo' => undef ], [] ] ],
        [ 'wide char in value',    [ 200, [ 'X-Foo' => "\x{263a}" ], [] ] ],
        [ 'bad Content-Length',    [ 200, [ 'Content-Length' => '1e3' ], ['x'] ] ],
        [ 'two Content-Lengths',   [ 200, [ 'Content-Length' => 1, 'Content-Length' => 2 ], ['x'] ] ],
        [ '2-element response',    [ 200, [] ] ],
        [ '4-element response',    [ 200, [], [], 1 ] ],
        [ 'string body',           [ 200, [], 'body' ] ],
        [ 'undef body',            [ 200, [], undef ] ],
    );
    for my $case (@bad) {
        my ($name, $r) = @$case;
        my $res = run_request(app_returning($r));
        ok !defined $res->{status}, "$name: no head";
        is $res->{error}{kind}, 'protocol', "$name: Error.kind protocol" or diag explain $res;
        ok $res->{end} && !$res->{abort}, "$name: end without abort (Go answers 500)";
        unlike $res->{body}, qr/./, "$name: no body";
    }
    for my $r ('not a ref', { a => 1 }, undef) {
        my $res = run_request(sub { $r });
        is $res->{error}{kind}, 'protocol', 'P11 app returning ' . (defined $r ? $r : 'undef') . ': error frame';
    }
};

subtest 'P13 G11 valid edge cases pass' => sub {
    my $value = "caf\xe9 \xff !~";
    my $res = run_request(app_returning([ 200, [ 'X_Under' => '1', 'X-Latin' => $value, 'X-Empty' => '',
        'Content-Length' => 1, 'content-length' => '1' ], ['x'] ]));
    is $res->{status}, 200, 'accepted';
    is FakeSlot::header($res, 'X-Latin'), $value, 'obs-text bytes pass';
    my $flagged = "caf\x{e9}";
    utf8::upgrade($flagged);
    $res = run_request(app_returning([ 200, [ 'X-Flagged' => $flagged ], [$flagged] ]));
    is FakeSlot::header($res, 'X-Flagged'), "caf\xe9", 'UTF-8-flagged Latin-1 value sent as its Latin-1 bytes';
    is $res->{body}, "caf\xe9", 'same for the body (P16)';
    is scalar(grep { lc $_ eq 'content-length' } @{ $res->{headers} }), 1, 'one Content-Length line';
};

subtest 'G12 H13 hop-by-hop headers are stripped with a warning' => sub {
    my ($logs, $res) = capture_logs(sub {
        run_request(app_returning([ 200, [ Connection => 'close', 'Keep-Alive' => '1', 'Transfer-Encoding' => 'chunked',
            'Proxy-Connection' => 'x', TE => 'x', Trailer => 'x', Upgrade => 'h2c', 'X-Keep' => 'y' ], ['x'] ]));
    });
    is $res->{status}, 200, 'not an error';
    is_deeply [ grep { !/^(?:X-Keep|Content-Length)$/ } map { $res->{headers}[ 2 * $_ ] } 0 .. $#{ $res->{headers} } / 2 ], [],
      'all seven removed';
    is scalar(grep { $_->{level} eq 'warn' && $_->{message} =~ /hop-by-hop/ } @$logs), 7, 'one warning each';
};

subtest 'headers seen before (checked once, then cached) give the same results' => sub {
    my @h = ('Content-Type' => 'text/plain', 'X-Same' => 'v', Connection => 'close');
    for my $round (1 .. 3) {
        my ($logs, $res) = capture_logs(sub { run_request(app_returning([ 200, [@h], ['x'] ])) });
        is_deeply $res->{headers}, [ 'Content-Type' => 'text/plain', 'X-Same' => 'v', 'Content-Length' => 1 ], "200, round $round";
        is scalar(grep { $_->{message} =~ /hop-by-hop/ } @$logs), 1, "hop-by-hop warned each time, round $round";
        $res = run_request(app_returning([ 204, [@h], [] ]));
        is_deeply $res->{headers}, [ 'X-Same' => 'v' ], "204 still drops Content-Type, round $round";
    }
    my $res = run_request(app_returning([ 200, [ 'X-Same' => "v
" ], ['x'] ]));
    ok $res->{error}, 'a value that differs by a control character is still an error';
    local $Bridge::Runner::Headers::CACHE_MAX = 2;
    $res = run_request(app_returning([ 200, [ map { ("X-N$_" => $_) } 1 .. 5 ], ['x'] ]));
    is_deeply $res->{headers}, [ (map { ("X-N$_" => $_) } 1 .. 5), 'Content-Length' => 1 ], 'past the cache size';
};

subtest 'P16 a wide character in the body is an app error' => sub {
    my $res = run_request(app_returning([ 200, [], [ "ok", "\x{263a}" ] ]));
    ok !defined $res->{status}, 'arrayref: no head (checked before anything is sent)';
    is $res->{error}{kind}, 'protocol', 'protocol error';
    like $res->{error}{message}, qr/wide character/, 'clear message';
    my $w = Plack::Middleware::Lint->wrap(app_returning([ 200, [], ["\x{263a}"] ]));
    $res = run_request($w);
    like $res->{error}{message}, qr/wide characters/, 'Lint says so too (P25)';
    $res = run_request(sub { sub { my $w = shift->([ 200, [] ]); $w->write('fine'); $w->write("\x{263a}"); $w->close } });
    is $res->{status}, 200, 'writer: head already sent';
    ok $res->{error} && $res->{abort}, 'then error + abort (G3)';
    is $res->{body}, 'fine', 'nothing of the bad chunk';
};

{
    package CloseCounter;
    sub new { my ($c, @lines) = @_; bless { lines => [@lines], closed => 0 }, $c }
    sub getline {
        my $s = shift;
        my $l = shift @{ $s->{lines} };
        die "getline boom\n" if defined $l && $l eq 'DIE';
        return $l;
    }
    sub close { $_[0]{closed}++ }
}

subtest 'P15 G5 handle bodies: getline until undef, close exactly once' => sub {
    my $body = CloseCounter->new('12', '', '34');
    my $res = run_request(app_returning([ 200, [], $body ]));
    is $res->{body}, '1234', 'PS17 body';
    is $body->{closed}, 1, 'closed once';
    ok !FakeSlot::header($res, 'Content-Length'), 'no Content-Length for a non-file handle';
    is $res->{frames}, 3, 'one frame per chunk, then end';

    $body = CloseCounter->new('DIE');
    $res = run_request(app_returning([ 200, [], $body ]));
    ok !defined $res->{status} && $res->{error}, 'P20: getline dying before data: error, no head (500)';
    is $res->{error}{kind}, 'app', 'kind app';
    is $body->{closed}, 1, 'closed once on error';

    $body = CloseCounter->new('data', 'DIE');
    $res = run_request(app_returning([ 200, [], $body ]));
    is $res->{status}, 200, 'head sent with the first chunk';
    ok $res->{error} && $res->{abort}, 'G3: error after the head aborts';
    is $body->{closed}, 1, 'closed once';

    $body = CloseCounter->new('a' .. 'z');
    $res = run_request(app_returning([ 200, [], $body ]), _slot => { cancel_after => 2 });
    is $body->{closed}, 1, 'G4: closed once when the stream is cancelled';
    ok @{ $body->{lines} } > 20, 'iteration stopped';

    $body = CloseCounter->new('');
    $res = run_request(app_returning([ 200, [], $body ]));
    is FakeSlot::header($res, 'Content-Length'), 0, 'empty handle body: Content-Length 0';

    my $seen_rs;
    my $obj = Plack::Util::inline_object(getline => sub { $seen_rs = $/; undef }, close => sub { });
    run_request(app_returning([ 200, [], $obj ]));
    is ref $seen_rs, 'SCALAR', 'getline called with $/ as a record size';
    is ${$seen_rs}, 65536, '... of 64 KiB';
};

subtest 'P15 G23 real files: File frame, path and offset; bytes identical' => sub {
    my $tmp = File::Temp->new;
    print $tmp join '', map { "line $_\n" } 1 .. 1000;
    close $tmp;
    my $size = -s $tmp->filename;

    open my $fh, '<', $tmp->filename or die;
    my ($res, $result) = run_request(app_returning([ 200, [ 'Content-Type' => 'text/plain' ], $fh ]));
    is_deeply $res->{file}, { path => $tmp->filename, offset => 0, length => $size }, 'File frame (PS06/PS07)';
    is FakeSlot::header($res, 'Content-Length'), $size, 'P21: Content-Length from -s';
    ok $res->{end}, 'with end';
    is $res->{frames}, 1, 'one frame';
    ok $result->{response}, 'close deferred until Go has read the file';
    ok defined fileno($fh), 'not closed yet';
    $result->{response}->close_body;
    ok !defined fileno($fh), 'closed by close_body';

    open $fh, '<', $tmp->filename or die;
    my $skip = <$fh>;
    Plack::Util::set_io_path($fh, $tmp->filename);
    $res = run_request(app_returning([ 200, [], $fh ]));
    is $res->{file}{offset}, length $skip, 'offset = tell, after the app read a line';
    is $res->{file}{length}, $size - length $skip, 'length to the end';

    open $fh, '<:crlf', $tmp->filename or die;
    $res = run_request(app_returning([ 200, [], $fh ]));
    ok !$res->{file}, 'a handle with a translating layer is iterated';
    is length $res->{body}, $size, 'bytes iterated';

    open $fh, '<', $tmp->filename or die;
    $res = run_request(app_returning([ 200, [ 'Content-Length' => 10 ], $fh ]));
    is $res->{file}{length}, 10, 'G13: File length capped at Content-Length';
    open $fh, '<', $tmp->filename or die;
    $res = run_request(app_returning([ 200, [ 'Content-Length' => $size + 5 ], $fh ]));
    ok !$res->{file} && $res->{abort}, 'file shorter than Content-Length: iterated, then aborted';
    is length $res->{body}, $size, '... after all its bytes';

    open $fh, '<', $tmp->filename or die;
    $res = run_request(app_returning([ 200, [], $fh ]), method => 'HEAD');
    ok !$res->{file} && $res->{body} eq '', 'HEAD: no File frame, no body';
    is FakeSlot::header($res, 'Content-Length'), $size, 'HEAD: Content-Length still from the file';

    my $glob_body = do { no warnings 'once'; open(TESTFH, '<', $tmp->filename) or die; *TESTFH };
    $res = run_request(app_returning([ 200, [], \*TESTFH ]));
    ok $res->{file}, 'a glob reference works too (PS06)';
};

subtest 'G13 Content-Length: overrun truncated, short aborted' => sub {
    my ($logs, $res) = capture_logs(sub { run_request(app_returning([ 200, [ 'Content-Length' => 3 ], ['hello'] ])) });
    is $res->{body}, 'hel', 'truncated to the declared length';
    ok $res->{end} && !$res->{abort}, 'clean end';
    ok grep({ $_->{message} =~ /longer than its Content-Length/ } @$logs), 'logged';

    my $body = CloseCounter->new('ab', 'cd', 'ef');
    ($logs, $res) = capture_logs(sub { run_request(app_returning([ 200, [ 'Content-Length' => 3 ], $body ])) });
    is $res->{body}, 'abc', 'handle: truncated';
    is scalar(@{ $body->{lines} }), 1, 'iteration stopped at the limit';
    is $body->{closed}, 1, 'closed';

    ($logs, $res) = capture_logs(sub { run_request(app_returning([ 200, [ 'Content-Length' => 10 ], ['short'] ])) });
    is $res->{body}, 'short', 'short body sent';
    ok $res->{end} && $res->{abort}, 'then end + abort';
    ok grep({ $_->{message} =~ /short of its Content-Length/ } @$logs), 'logged';
};

subtest 'P22 G14 204 and 304: no body, no entity headers (PS24)' => sub {
    for my $code (204, 304) {
        my $body = CloseCounter->new('dropped');
        my $res = run_request(app_returning([ $code, [ 'Content-Type' => 'text/plain', 'Content-Length' => 7,
            'Transfer-Encoding' => 'chunked', ETag => '"x"' ], $body ]));
        is $res->{status}, $code, "$code sent";
        is_deeply $res->{headers}, [ ETag => '"x"' ], "$code: Content-Type, Content-Length, Transfer-Encoding removed";
        is $res->{body}, '', "$code: no body";
        is $body->{closed}, 1, "$code: body still closed";
        $res = run_request(app_returning([ $code, [], [] ]));
        is_deeply $res->{headers}, [], "$code: no Content-Length added";
    }
};

subtest 'P24 HEAD: no body frames, app Content-Length kept, none made up' => sub {
    my $res = run_request(app_returning([ 200, [ 'Content-Length' => 5 ], ['hello'] ]), method => 'HEAD');
    is $res->{body}, '', 'no body';
    is FakeSlot::header($res, 'Content-Length'), 5, 'kept';
    ok !$res->{abort}, 'not short';
    $res = run_request(app_returning([ 200, [], [] ]), method => 'HEAD');
    ok !FakeSlot::header($res, 'Content-Length'), 'no Content-Length: 0 for an empty HEAD body';
    $res = run_request(app_returning([ 200, [], ['hello'] ]), method => 'HEAD');
    is FakeSlot::header($res, 'Content-Length'), 5, 'the length GET would have';
    my $body = CloseCounter->new('a', 'b', 'c');
    $res = run_request(app_returning([ 200, [], $body ]), method => 'HEAD');
    is $res->{body}, '', 'handle: nothing sent';
    is $body->{closed}, 1, 'closed';
    ok @{ $body->{lines} } >= 1, 'iteration may stop after the first chunk';
    $res = run_request(sub { sub { my $w = shift->([ 200, [] ]); $w->write('x'); $w->close } }, method => 'HEAD');
    is $res->{body}, '', 'writer: nothing sent';
    ok $res->{end} && !$res->{abort}, 'clean end';
};

subtest 'P23 G2 app die before the head: error frame, no text anywhere else' => sub {
    my $res = run_request(sub { die "secret details\n" });
    ok !defined $res->{status}, 'no head';
    is $res->{error}{kind}, 'app', 'kind app';
    is $res->{error}{message}, 'secret details', 'message for the log';
    is $res->{body}, '', 'no body';
    ok $res->{end} && !$res->{abort}, 'end (Go answers 500)';
    $res = run_request(sub { die { code => 1 } });
    is $res->{error}{kind}, 'app', 'a non-string exception';
    $res = run_request(app_returning([ 200, [], ['ok'] ]));
    is $res->{body}, 'ok', 'the next request works (runner alive)';
};

subtest 'P25 Lint-wrapped apps: Lint failures become 500s' => sub {
    my $res = run_request(Plack::Middleware::Lint->wrap(app_returning([ 200, [ 'X-Foo' => "a\tb" ], ['x'] ])));
    ok !defined $res->{status} && $res->{error}, 'error before the head';
    like $res->{error}{message}, qr/Response headers MUST NOT contain characters below/, "Lint's message";
    $res = run_request(Plack::Middleware::Lint->wrap(app_returning([ 200, [], ['x'] ])), method => 'PATCH-IT');
    like $res->{error}{message}, qr/Invalid env param: REQUEST_METHOD/, 'P3: Lint rejects the method, not the server';
};

done_testing;
