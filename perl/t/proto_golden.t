# The codec against bytes made by the real protobuf runtime
# (fixtures/gen_golden.py with python/bridge_runner/runner_pb2.py).
use strict;
use warnings;
use Test::More;
use JSON::PP ();
use FindBin;
use Bridge::Runner::Proto qw(decode_request_frame encode_response_frame encode_describe_response);

my $dir   = "$FindBin::Bin/fixtures";
my $cases = do {
    open my $fh, '<:raw', "$dir/proto_cases.json" or die $!;
    local $/;
    JSON::PP->new->utf8->decode(<$fh>);
};
my %golden;
open my $fh, '<', "$dir/proto_golden.txt" or die $!;
while (<$fh>) {
    next if /^#/;
    my ($kind, $name, $hex) = split;
    $golden{$kind}{$name} = $hex eq '-' ? '' : pack('H*', $hex);
}

# JSON strings of byte fields hold code points 0-255: make them bytes.
sub bytes { my $s = shift; utf8::downgrade($s); $s }
sub text  { my $s = shift; utf8::encode($s); $s }

sub response_frame {
    my $c = shift;
    my %f = %$c;
    if ($f{head}) {
        $f{head} = { %{ $f{head} } };
        $f{head}{headers} = [ map { [ bytes($_->[0]), bytes($_->[1]) ] } @{ $f{head}{headers} || [] } ];
    }
    $f{body} = bytes($f{body}) if defined $f{body};
    return \%f;
}

for my $name (sort keys %{ $cases->{ResponseFrame} }) {
    my $got = encode_response_frame(response_frame($cases->{ResponseFrame}{$name}));
    is unpack('H*', $got), unpack('H*', $golden{ResponseFrame}{$name}), "ResponseFrame $name";
}

for my $name (sort keys %{ $cases->{DescribeResponse} }) {
    my $got = encode_describe_response($cases->{DescribeResponse}{$name});
    is unpack('H*', $got), unpack('H*', $golden{DescribeResponse}{$name}), "DescribeResponse $name";
}

for my $name (sort keys %{ $cases->{RequestFrame} }) {
    my $c    = $cases->{RequestFrame}{$name};
    my %want = (body => bytes($c->{body} // ''), end => $c->{end} ? 1 : 0);
    if (my $h = $c->{head}) {
        $want{head} = {
            request_id     => text($h->{request_id} // ''),
            url_scheme     => text($h->{url_scheme} // ''),
            content_length => $h->{content_length} // 0,
            vars           => [ map { [ bytes($_->[0]), bytes($_->[1]) ] } @{ $h->{vars} || [] } ],
        };
    }
    my $got = decode_request_frame($golden{RequestFrame}{$name});
    is_deeply $got, \%want, "RequestFrame $name decodes";
    ok !utf8::is_utf8($_), "RequestFrame $name: var bytes carry no UTF-8 flag (P2)"
      for map { @$_ } @{ $got->{head}{vars} || [] };
}

# A reason that is a character string (UTF-8 flag on, ASCII) encodes to the
# same bytes, and the frame stays a byte string (it goes to syswrite).
{
    my $reason = 'OK';
    utf8::upgrade($reason);
    my $frame = { head => { status => 200, reason => $reason, headers => [ [ 'X', "\xff" ] ] }, body => "\xfe", end => 1 };
    my $got = encode_response_frame($frame);
    ok !utf8::is_utf8($got), 'flagged reason: the frame is bytes';
    is unpack('H*', $got), unpack('H*', encode_response_frame({ %$frame, head => { %{ $frame->{head} }, reason => 'OK' } })),
      'flagged reason: same bytes';
}

# Decoded vars are cached by their bytes: the same answers from the cache,
# and after it was emptied for being full.
{
    local $Bridge::Runner::Proto::VAR_CACHE_MAX = 3;
    for my $name (sort keys %{ $cases->{RequestFrame} }) {
        my $first = decode_request_frame($golden{RequestFrame}{$name});
        is_deeply decode_request_frame($golden{RequestFrame}{$name}), $first, "RequestFrame $name: same again (cached vars)";
    }
}

# Unknown fields of every wire type are skipped (a newer Go may add some).
{
    my $bytes = $golden{RequestFrame}{get}
      . "\x78\x05"                     # field 15, varint
      . "\x82\x01\x03abc"              # field 16, bytes
      . "\x89\x01" . ("\0" x 8)        # field 17, fixed64
      . "\x95\x01" . ("\0" x 4);       # field 18, fixed32
    my $got = decode_request_frame($bytes);
    is $got->{head}{request_id}, '01HZX3', 'unknown fields skipped';
    ok $got->{end}, 'end still read after unknown fields';
}

# Var fields in the other order, and repeated: protobuf allows both.
{
    my $v = sub { my ($n, $s) = @_; chr($n << 3 | 2) . Bridge::Runner::Proto::_varint(length $s) . $s };
    my $head = $v->(2, $v->(2, 'val') . $v->(1, 'NAME')) . $v->(2, $v->(1, 'A') . $v->(1, 'B') . $v->(2, 'x'));
    my $got = decode_request_frame($v->(1, $head));
    is_deeply $got->{head}{vars}, [ [ 'NAME', 'val' ], [ 'B', 'x' ] ], 'Var fields out of order or repeated';
}

# Malformed input dies with a message instead of looping or reading past the end.
for my $bad ("\x12\x05abc", "\x0a\xff", "\x1b") {
    ok !eval { decode_request_frame($bad); 1 }, 'malformed ' . unpack('H*', $bad) . ' dies';
    like $@, qr/^protobuf: /, '... with a protobuf: message';
}

is Bridge::Runner::Proto::HEALTH_SERVING, "\x08\x01", 'health SERVING bytes';
is Bridge::Runner::Proto::EMPTY, '', 'Empty is no bytes';

done_testing;
