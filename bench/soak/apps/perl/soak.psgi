# The soak's app (bench/soak) as plain PSGI: the same routes and bytes as
# ../python/soak.py (see there). /stream and /big write through the
# psgi.streaming writer, one write per chunk.
use strict;
use warnings;
use Digest::SHA;

my $HELLO   = 'Hello, World!';
my $PIECE   = '0123456789abcdef' x 4096;    # 64 KiB
my $MAX_KIB = 1 << 18;

sub arg {
    my ($env, $name, $default, $most) = @_;
    my $q = $env->{QUERY_STRING} // '';
    return $default unless $q =~ /(?:^|&)\Q$name\E=(\d+)/;
    return $1 > $most ? $most : $1;
}

my %routes = (
    '/hello' => sub {
        [200, ['Content-Type' => 'text/plain', 'Content-Length' => 13], [$HELLO]];
    },
    '/upload' => sub {
        my $env    = shift;
        my $left   = $env->{CONTENT_LENGTH} || 0;
        my $in     = $env->{'psgi.input'};
        my $digest = Digest::SHA->new(256);
        my $n      = 0;
        while ($left > 0) {
            my $got = $in->read(my $part, $left > 262144 ? 262144 : $left);
            last unless $got;
            $digest->add($part);
            $n    += $got;
            $left -= $got;
        }
        my $body = "$n " . $digest->hexdigest;
        [200, ['Content-Type' => 'text/plain', 'Content-Length' => length $body], [$body]];
    },
    '/stream' => sub {
        my $n = arg(shift, 'n', 100, 100000);
        return sub {
            my $w = shift->([200, ['Content-Type' => 'text/plain', 'X-Accel-Buffering' => 'no']]);
            $w->write(sprintf('%04d', $_ % 10000) . ('x' x 1019) . "\n") for 0 .. $n - 1;
            $w->close;
        };
    },
    '/big' => sub {
        my $size = arg(shift, 'kib', 1024, $MAX_KIB) * 1024;
        return sub {
            my $w = shift->([200, ['Content-Type' => 'application/octet-stream', 'Content-Length' => $size]]);
            while ($size > 0) {
                my $part = $size >= length $PIECE ? $PIECE : substr($PIECE, 0, $size);
                $size -= length $part;
                $w->write($part);
            }
            $w->close;
        };
    },
);

sub {
    my $env   = shift;
    my $route = $routes{ $env->{PATH_INFO} // '' }
        or return [404, ['Content-Type' => 'text/plain', 'Content-Length' => 10], ["not found\n"]];
    $route->($env);
};
