# Delayed responses and the streaming writer (P17-P19, G1, G3, G4).
use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use Plack::Middleware::Lint;
use TestPSGI;
use FakeSlot;

subtest 'P17 PS28 responder with 3 elements' => sub {
    my $res = run_request(sub { sub { shift->([ 200, [ 'Content-Type' => 'text/plain' ], ['delayed'] ]) } });
    is $res->{body}, 'delayed', 'body';
    is $res->{frames}, 1, 'one frame, as for an arrayref';
    my $res2 = run_request(Plack::Middleware::Lint->wrap(sub { sub { shift->([ 200, [], ['lint ok'] ]) } }));
    is $res2->{body}, 'lint ok', 'through Lint';
};

subtest 'P17 P18 G1 writer: head at once, one frame per write, close ends' => sub {
    my ($res, $result, $slot) = run_request(sub {
        sub {
            my $w = shift->([ 200, [ 'Content-Type' => 'text/event-stream' ] ]);
            $w->write('a');
            $w->write('');
            $w->write('b');
            $w->close;
        };
    });
    my @f = $slot->sent;
    is scalar @f, 4, 'head, a, b, end';
    ok $f[0]{head} && !exists $f[0]{body} && !$f[0]{end}, 'the head goes alone, at once (SSE)';
    is $f[1]{body}, 'a', 'first write';
    is $f[2]{body}, 'b', 'second write; the empty one was a no-op';
    ok $f[3]{end} && !exists $f[3]{body}, 'close ends';
    ok !FakeSlot::header($res, 'Content-Length'), 'no Content-Length made up for a stream';
};

subtest 'P17 responder twice dies; Lint-wrapped streaming works (PS29)' => sub {
    my $err;
    my $res = run_request(sub {
        sub {
            my $r = shift;
            $r->([ 200, [], ['one'] ]);
            eval { $r->([ 200, [], ['two'] ]) };
            $err = $@;
        };
    });
    like $err, qr/called twice/, 'second call dies';
    is $res->{body}, 'one', 'first response stands';
    $res = run_request(Plack::Middleware::Lint->wrap(sub {
        sub { my $w = shift->([ 200, [ 'Content-Type' => 'text/plain' ] ]); $w->write('x'); $w->write('y'); $w->close }
    }));
    is $res->{body}, 'xy', 'Lint streaming';
};

subtest 'P19 returning without calling the responder: 500 + error' => sub {
    my $res = run_request(sub { sub { } });
    ok !defined $res->{status}, 'no head';
    is $res->{error}{kind}, 'protocol', 'protocol error';
    like $res->{error}{message}, qr/without calling the responder/, 'says why';
};

subtest 'P19 writer dropped without close: ended cleanly, with a warning' => sub {
    my ($logs, $res) = capture_logs(sub {
        run_request(sub { sub { my $w = shift->([ 200, [] ]); $w->write('x'); undef $w; } });
    });
    is $res->{body}, 'x', 'data sent';
    ok $res->{end} && !$res->{abort} && !$res->{error}, 'clean end';
    ok grep({ $_->{level} eq 'warn' && $_->{message} =~ /dropped without close/ } @$logs), 'warning logged';

    my $kept;
    ($logs, $res) = capture_logs(sub { run_request(sub { sub { $kept = shift->([ 200, [] ]); $kept->write('y') } }) });
    ok $res->{end} && !$res->{abort}, 'kept past the return: ended when the app returns';
    ok grep({ $_->{message} =~ /returned without closing/ } @$logs), 'warning logged';
    ok !eval { $kept->write('late'); 1 }, 'a late write dies';
};

subtest 'G3 app dies after the head: error + abort, never a clean end' => sub {
    my $res = run_request(sub { sub { my $w = shift->([ 200, [] ]); $w->write('partial'); die "boom\n" } });
    is $res->{body}, 'partial', 'what was written';
    ok $res->{error} && $res->{end} && $res->{abort}, 'error, end, abort';
    is $res->{error}{message}, 'boom', 'message for the log';
};

subtest 'P18 G4 writes after a cancel die with a disconnect error, logged at info' => sub {
    my ($err, $writes);
    my ($logs, $res, $result) = capture_logs(sub {
        run_request(sub {
            sub {
                my $w = shift->([ 200, [] ]);
                eval { for (1 .. 100) { $w->write("chunk $_"); $writes++ } };
                $err = $@;
                die $err;    # as an app that does not catch it
            };
        }, _slot => { cancel_after => 3 });
    });
    is $writes, 2, 'two writes went out (head + 2 frames)';
    isa_ok $err, 'Bridge::Runner::Disconnected';
    like "$err", qr/client went away/, 'recognisable text';
    ok $result->{gone}, 'request reported as cancelled';
    ok !grep({ $_->{level} eq 'error' } @$logs), 'not logged as an app error';
    ok grep({ $_->{level} eq 'info' && $_->{message} eq 'request cancelled' } @$logs), 'logged at info';
};

subtest 'G13 writer and Content-Length' => sub {
    my ($logs, $res) = capture_logs(sub {
        run_request(sub { sub { my $w = shift->([ 200, [ 'Content-Length' => 4 ] ]); $w->write('ab'); $w->write('cdef'); $w->write('gh'); $w->close } });
    });
    is $res->{body}, 'abcd', 'truncated at the declared length';
    ok !$res->{abort}, 'complete';
    my $slot;
    ($logs, $res, undef, $slot) = capture_logs(sub {
        run_request(sub { sub { my $w = shift->([ 200, [ 'Content-Length' => 4 ] ]); $w->write('abcd'); $w->write('x'); $w->close } });
    });
    is $res->{body}, 'abcd', 'exactly the declared length';
    is $res->{frames}, 3, 'head, body, end: no empty frame for the cut chunk';
    ok $res->{end} && !$res->{error} && !$res->{abort}, 'a clean end';
    ($logs, $res) = capture_logs(sub {
        run_request(sub { sub { my $w = shift->([ 200, [ 'Content-Length' => 4 ] ]); $w->write('ab'); $w->close } });
    });
    ok $res->{abort}, 'short: aborted';
};

subtest 'bad responder arguments' => sub {
    my $res = run_request(sub { sub { shift->('nope') } });
    is $res->{error}{kind}, 'protocol', 'not an arrayref';
    $res = run_request(sub { sub { shift->([200]) } });
    is $res->{error}{kind}, 'protocol', 'one element';
    $res = run_request(sub { sub { shift->([ 99, [] ]) } });
    ok !defined $res->{status}, 'bad status on a streaming response: nothing sent';
};

done_testing;
