# Bridge::Runner::GRPC on its own, client and server in one process (the
# test pumps both): gRPC framing and status, and the Protocol::HTTP2 1.10
# traps it works around (docs/design.md, "Runners and go-plugin", Perl).
use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use File::Temp qw(tempdir);
BEGIN { $ENV{BRIDGE_LOG_LEVEL} //= 'fatal' }
use Bridge::Runner::GRPC;
use GRPCClient;

my (%calls, @cancelled, @messages);
my $server = Bridge::Runner::GRPC->new(routes => {
    '/t.S/Echo'  => { unary => sub { "echo:" . shift } },
    '/t.S/Fail'  => { unary => sub { die "handler died\n" } },
    '/t.S/Early' => { open  => sub {
        my $call = shift;
        $call->{on_message} = sub { push @messages, shift };
        $call->finish(0);    # before the client has half-closed
    } },
    '/t.S/Big' => { open => sub {
        my $call = shift;
        $calls{big} = $call;
        $call->{on_half_close} = sub {
            $call->send_message('x' x 300_000);    # more than the 64 KiB connection window
            $call->{was_blocked} = $call->blocked;
            $call->finish(0);
        };
    } },
    '/t.S/Stream' => { open => sub {
        my $call = shift;
        $calls{stream} = $call;
        $call->{on_message} = sub { $call->send_message('re:' . shift) };
        $call->{on_cancel}  = sub { push @cancelled, $call->{sid} };
    } },
});
my $path = $server->listen(tempdir(CLEANUP => 1));
like $path, qr{/bridge-psgi-\d+\.sock$}, 'listens on a unix socket in the given directory';

sub client {
    my $c = GRPCClient->new($path);
    $c->{on_pump} = sub { $server->pump(0) };
    return $c;
}
my $c = client();

subtest 'unary: reply and grpc-status 0; a dying handler is INTERNAL' => sub {
    my ($msg, $t) = $c->unary('/t.S/Echo', 'hi');
    is $msg, 'echo:hi', 'reply';
    is $t->{'grpc-status'}, 0, 'status 0';
    ($msg, $t) = $c->unary('/t.S/Fail', 'x');
    ok !defined $msg, 'no reply';
    is $t->{'grpc-status'}, 13, 'INTERNAL';
    ($msg, $t) = $c->unary('/t.S/Nope', 'x');
    is $t->{'grpc-status'}, 12, 'unknown method: UNIMPLEMENTED';
    like $t->{'grpc-message'}, qr{unknown method /t\.S/Nope}, 'grpc-message';
};

subtest 'trailers wait until the client half-closes (1.10 state machine trap)' => sub {
    my $st = $c->open_stream('/t.S/Early');
    $c->send_msg($st, 'one');
    $c->pump(0.05) for 1 .. 5;
    ok !$st->{trailers}, 'no trailers while the client still sends';
    $c->send_msg($st, 'two');
    $c->pump(0.05) for 1 .. 5;
    is_deeply \@messages, [ 'one', 'two' ], 'the client may keep sending: no connection error';
    $c->half_close($st);
    $c->wait_for(sub { $st->{trailers} }, 5, 'trailers');
    is $st->{trailers}{'grpc-status'}, 0, 'then the trailers (trailers-only response)';
    my ($msg) = $c->unary('/t.S/Echo', 'still');
    is $msg, 'echo:still', 'connection still fine';
};

subtest 'trailers never overtake flow-controlled DATA' => sub {
    my $c2 = client();
    my $st = $c2->open_stream('/t.S/Big');
    $c2->send_msg($st, 'go', 1);
    $c2->wait_for(sub { $st->{trailers} }, 10, 'trailers');
    ok $calls{big}{was_blocked}, 'the message did wait for window (the case that matters)';
    is_deeply $st->{at_trailers}, { messages => 1, partial => 0 }, 'the whole message had arrived when the trailers came';
    is length $st->{messages}[0], 300_000, 'all of it';
    is $st->{trailers}{'grpc-status'}, 0, 'status 0';
};

subtest 'client RST_STREAM: on_cancel, closed call; replies after it are dropped' => sub {
    my $st = $c->open_stream('/t.S/Stream');
    $c->send_msg($st, 'a');
    is $c->next_msg($st, 5), 're:a', 'bidi reply';
    my $call = $calls{stream};
    $c->cancel($st);
    $c->wait_for(sub { @cancelled }, 5, 'cancel');
    is_deeply \@cancelled, [ $call->{sid} ], 'on_cancel ran once';
    ok $call->closed, 'closed';
    ok !$call->send_message('late'), 'send_message on a closed call is refused';
    my ($msg) = $c->unary('/t.S/Echo', 'after');
    is $msg, 'echo:after', 'connection unaffected';
};

subtest 'DATA fast path: more than the windows on one stream, window updates keep it going' => sub {
    my $c2 = client();
    my $st = $c2->open_stream('/t.S/Stream');
    my @sent = map { sprintf('%05d', $_) . ('m' x 995) } 1 .. 2500;    # 2.5 MB: > the 1 MiB stream window
    my $i = 0;
    for my $m (@sent) {
        $c2->send_msg($st, $m);
        $c2->pump(0) unless ++$i % 50;
    }
    $c2->wait_for(sub { @{ $st->{messages} } >= @sent }, 20, 'all echoes');
    is scalar @{ $st->{messages} }, scalar @sent, 'every message echoed';
    is_deeply [ @{ $st->{messages} }[ 0, -1 ] ], [ "re:$sent[0]", "re:$sent[-1]" ], 'in order';
    my $big = 'b' x 100_000;    # several DATA frames per message
    $c2->send_msg($st, $big);
    $c2->wait_for(sub { @{ $st->{messages} } > @sent }, 10, 'big echo');
    is $st->{messages}[-1], "re:$big", 'a message over several frames';
    close $c2->{sock};
    $server->pump(0.01) for 1 .. 3;
};

subtest 'frames split across reads at any byte' => sub {
    my $c2 = client();
    my $st = $c2->open_stream('/t.S/Stream');
    $c2->pump(0.01) for 1 .. 3;
    my $con = $c2->{con};
    $con->send_data($st->{sid}, pack('CN', 0, length $_) . $_) for 'one', 'two' x 10, 'three';
    my $bytes = '';
    while (defined(my $f = $con->dequeue)) { $bytes .= $f }
    for my $piece (unpack '(a7)*', $bytes) {
        syswrite $c2->{sock}, $piece;
        $server->pump(0.01);
    }
    $c2->wait_for(sub { @{ $st->{messages} } >= 3 }, 5, 'echoes');
    is_deeply $st->{messages}, [ 're:one', 're:' . ('two' x 10), 're:three' ], 'each message once, whole';
    close $c2->{sock};
    $server->pump(0.01) for 1 .. 3;
};

subtest 'the client preface and the frames after it split at any byte' => sub {
    no warnings 'redefine';
    # Every write of the client in pieces of 7 bytes, the server reading each.
    local *GRPCClient::flush = sub {
        my $self  = shift;
        my $bytes = '';
        while (defined(my $f = $self->{con}->dequeue)) { $bytes .= $f }
        for my $piece (unpack '(a7)*', $bytes) {
            syswrite $self->{sock}, $piece;
            $server->pump(0.005);
        }
    };
    my $c2 = client();
    my $st = $c2->open_stream('/t.S/Stream');
    $c2->send_msg($st, 'split');
    $c2->send_msg($st, 'again');
    $c2->wait_for(sub { @{ $st->{messages} } >= 2 }, 5, 'echoes');
    is_deeply $st->{messages}, [ 're:split', 're:again' ], 'echoed';
    close $c2->{sock};
    $server->pump(0.01) for 1 .. 3;
};

subtest 'closed streams are dropped from the HTTP/2 table after a while' => sub {
    local $Bridge::Runner::GRPC::PRUNE_AFTER = 0;
    # The connection of $c, which has had the most streams.
    my ($conn) = sort { keys %{ $b->{h2}{con}{streams} } <=> keys %{ $a->{h2}{con}{streams} } } values %{ $server->{conns} };
    my $streams = $conn->{h2}{con}{streams};
    ok scalar(keys %$streams) > 3, 'closed streams accumulate in 1.10';
    $server->pump(0);
    my @left = grep { $streams->{$_}{state} == 5 } keys %$streams;
    is scalar @left, 0, 'no closed stream left after pruning';
    my ($msg) = $c->unary('/t.S/Echo', 'pruned');
    is $msg, 'echo:pruned', 'new streams still work';
};

subtest 'a dropped connection cancels its calls' => sub {
    @cancelled = ();
    my $c3 = client();
    my $st = $c3->open_stream('/t.S/Stream');
    $c3->send_msg($st, 'x');
    is $c3->next_msg($st, 5), 're:x', 'open';
    close $c3->{sock};
    $server->pump(0.1) for 1 .. 5;
    is scalar @cancelled, 1, 'on_cancel ran';
};

done_testing;
