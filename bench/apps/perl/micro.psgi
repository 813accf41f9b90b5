# The bench's micro workloads as one PSGI app, routed on PATH_INFO; the same
# bodies as micro.py (see there). /stream uses the psgi.streaming writer, one
# write per chunk.
use strict;
use warnings;

my $HELLO  = 'Hello, World!';
my $BIG    = '0123456789abcdef' x 4096;
my @CHUNKS = map { sprintf('%04d', $_) . ('x' x 1019) . "\n" } 0 .. 99;

my %routes = (
    '/hello' => sub {
        [200, ['Content-Type' => 'text/plain', 'Content-Length' => 13], [$HELLO]];
    },
    '/big' => sub {
        [200, ['Content-Type' => 'application/octet-stream', 'Content-Length' => 65536], [$BIG]];
    },
    '/echo' => sub {
        my $env  = shift;
        my $left = $env->{CONTENT_LENGTH} || 0;
        my $in   = $env->{'psgi.input'};
        my $body = '';
        while ($left > 0) {
            my $n = $in->read($body, $left > 262144 ? 262144 : $left, length $body);
            last unless $n;
            $left -= $n;
        }
        [200, ['Content-Type' => 'application/octet-stream', 'Content-Length' => length $body], [$body]];
    },
    '/stream' => sub {
        return sub {
            my $respond = shift;
            my $w = $respond->([200, ['Content-Type' => 'text/plain', 'X-Accel-Buffering' => 'no']]);
            $w->write($_) for @CHUNKS;
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
