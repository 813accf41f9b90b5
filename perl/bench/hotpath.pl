#!/usr/bin/perl
# The shim's per-request cost without Go, nginx or wrk (bench/NOTES.md,
# "Perl shim"): a raw HTTP/2 client sends one RequestFrame at a time on one
# Slot stream, as bridge does with one slot, to the real Service/GRPC/PSGI
# stack with a hello app, and reads the one ResponseFrame back.
#
#   perl perl/bench/hotpath.pl [--mode inproc|fork] [--requests N] [--app FILE.psgi [--path /P]] [--lib DIR]
#
# --mode inproc (default): client and server in one process, the server
#   turned by hand (the turns of Service::run); prints CPU µs per request of
#   the process. No wake-ups: the number is the shim's work plus 5 syscalls.
#   Deterministic under valgrind, which is how the changes were compared:
#     for n in 1000 3000; do valgrind --tool=cachegrind --cache-sim=no \
#       --cachegrind-out-file=/dev/null perl perl/bench/hotpath.pl --requests $n; done
#   (instructions per request = difference of the two "I refs" / 2000).
# --mode fork: the server in a child process, as in production; prints the
#   child's CPU µs per request (utime + stime from /proc) and req/s.
# --app, --path: another app than the built-in hello, and the PATH_INFO to
#   ask it for (bench/apps/perl/micro.psgi: /hello, /big).
# --lib DIR: the shim's lib directory (default: the one next to this file),
#   to compare two versions of the shim.
use strict;
use warnings;
use FindBin ();
use File::Temp ();
use Getopt::Long ();
use IO::Socket::UNIX;
use Socket qw(SOCK_STREAM);
use Time::HiRes qw(clock_gettime CLOCK_PROCESS_CPUTIME_ID);

my %opt = (mode => 'inproc', requests => 20000, lib => "$FindBin::RealBin/../lib", warmup => 2000, path => '/x');
Getopt::Long::GetOptions(\%opt, 'mode=s', 'requests=i', 'app=s', 'path=s', 'lib=s', 'warmup=i') or die "bad arguments\n";
unshift @INC, $opt{lib};
$ENV{BRIDGE_LOG_LEVEL} //= 'warn';
require Bridge::Runner::Log;
require Bridge::Runner::PSGI;
require Bridge::Runner::Service;
require Bridge::Runner::Proto;

# -- the request, as bridge's HTTP front sends a curl GET (14 vars) --------------

sub varint { my $n = shift; my $o = ''; while ($n >= 0x80) { $o .= chr(($n & 0x7f) | 0x80); $n >>= 7 } $o . chr $n }
sub ld { my ($num, $v) = @_; chr($num << 3 | 2) . varint(length $v) . $v }
sub frame { my ($type, $flags, $sid, $p) = @_; my $l = length $p; pack('CnCCN', $l >> 16, $l & 0xffff, $type, $flags, $sid) . $p }
sub literal { my ($n, $v) = @_; "\x00" . chr(length $n) . $n . chr(length $v) . $v }

my @vars = (
    [ REQUEST_METHOD => 'GET' ], [ SCRIPT_NAME => '' ], [ PATH_INFO => $opt{path} ], [ QUERY_STRING => 'y=1' ],
    [ REQUEST_URI => "$opt{path}?y=1" ], [ SERVER_PROTOCOL => 'HTTP/1.1' ], [ SERVER_NAME => '127.0.0.1' ],
    [ SERVER_PORT => '32270' ], [ REMOTE_ADDR => '127.0.0.1' ], [ REMOTE_PORT => '55854' ],
    [ REQUEST_SCHEME => 'http' ], [ HTTP_HOST => '127.0.0.1:32270' ], [ HTTP_ACCEPT => '*/*' ],
    [ HTTP_USER_AGENT => 'curl/7.88.1' ],
);
# proto3 leaves empty fields out, as Go's encoder does.
my $head = ld(1, '6adc9dd6955e03364d3154f1')
  . join('', map { ld(2, ld(1, $_->[0]) . (length $_->[1] ? ld(2, $_->[1]) : '')) } @vars)
  . ld(3, 'http');
my $message = ld(1, $head) . "\x18\x01";
my $data    = frame(0, 0, 1, pack('CN', 0, length $message) . $message);

# -- the server -------------------------------------------------------------------

my $dir = File::Temp::tempdir(CLEANUP => 1);
my $app = $opt{app} ? do { require Plack::Util; Plack::Util::load_psgi($opt{app}) }
  : sub { [ 200, [ 'Content-Type' => 'text/plain' ], ['Hello, World!'] ] };
my $svc  = Bridge::Runner::Service->new(psgi => Bridge::Runner::PSGI->new(app => $app, workers => 2), app_name => 'hello');
my $path = $svc->listen($dir);
my $server_pid;
if ($opt{mode} eq 'fork') {
    $server_pid = fork // die "fork: $!";
    if (!$server_pid) {
        $SIG{TERM} = sub { $svc->stop('TERM') };
        $svc->run;
        exit 0;
    }
}
elsif ($opt{mode} ne 'inproc') {
    die "--mode is inproc or fork\n";
}

# -- the client -------------------------------------------------------------------

my $sock = IO::Socket::UNIX->new(Type => SOCK_STREAM, Peer => $path) or die "connect $path: $!";
my $headers = "\x83\x86" . literal(':path', '/bridge.v1.Runner/Slot') . literal(':authority', 'localhost')
  . literal('content-type', 'application/grpc') . literal('te', 'trailers');
syswrite $sock, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
  . frame(4, 0, 0, pack('nN', 4, 4 << 20))             # SETTINGS_INITIAL_WINDOW_SIZE 4 MiB, as bridge
  . frame(8, 0, 0, pack('N', (16 << 20) - 65535))      # connection window 16 MiB
  . frame(1, 4, 1, $headers);                          # HEADERS: the Slot call
my $grpc = $svc->grpc;
if ($opt{mode} eq 'inproc') { $grpc->pump(0.1) for 1 .. 3 }

# Reads until one whole gRPC message (the ResponseFrame) has come on the slot.
my ($in, $window, $msg) = ('', 0, '');
sub response {
    while (1) {
        while (length $in >= 9) {
            my ($hi, $lo, $type, $flags, $sid) = unpack 'CnCCN', $in;
            my $len = ($hi << 16) | $lo;
            last if length $in < 9 + $len;
            my $payload = substr($in, 9, $len);
            substr($in, 0, 9 + $len, '');
            syswrite $sock, frame(4, 1, 0, '') if $type == 4 && !($flags & 1);    # SETTINGS ack
            next unless $type == 0 && $sid == 1;
            $window += $len;
            $msg .= $payload;
            if (length $msg >= 5 && length $msg >= 5 + unpack('x N', $msg)) {
                $msg = substr($msg, 5 + unpack('x N', $msg));
                return;
            }
        }
        sysread($sock, $in, 1 << 18, length $in) or die "the server closed the connection\n";
    }
}

sub one {
    syswrite $sock, $data;
    if (!$server_pid) {
        # One request's turns of Service::run.
        while (1) {
            $svc->_tidy;
            my $slot = $svc->_next_ready;
            if (!$slot) { $grpc->pump(1); next }
            $svc->_serve($slot);
            last;
        }
    }
    response();
    if ($window > 1 << 20) {
        syswrite $sock, frame(8, 0, 0, pack('N', $window)) . frame(8, 0, 1, pack('N', $window));
        $window = 0;
    }
}

sub server_ticks {
    open my $fh, '<', "/proc/$server_pid/stat" or die "stat: $!";
    my @f = split ' ', scalar <$fh>;
    return ($f[13], $f[14]);
}

one() for 1 .. $opt{warmup};
my $n  = $opt{requests};
my @t0 = $server_pid ? server_ticks() : ();
my ($c0, $w0) = (clock_gettime(CLOCK_PROCESS_CPUTIME_ID), Time::HiRes::time());
one() for 1 .. $n;
my ($c1, $w1) = (clock_gettime(CLOCK_PROCESS_CPUTIME_ID), Time::HiRes::time());
if ($server_pid) {
    my @t1 = server_ticks();
    my $hz = 100;    # USER_HZ
    printf "fork: %d requests, %.0f req/s, server CPU %.1f us/request (user %.1f, system %.1f)\n", $n, $n / ($w1 - $w0),
      (($t1[0] - $t0[0]) + ($t1[1] - $t0[1])) / $hz * 1e6 / $n, ($t1[0] - $t0[0]) / $hz * 1e6 / $n,
      ($t1[1] - $t0[1]) / $hz * 1e6 / $n;
    kill TERM => $server_pid;
    waitpid $server_pid, 0;
}
else {
    printf "inproc: %d requests, %.1f us CPU per request (client and server in one process)\n", $n, ($c1 - $c0) * 1e6 / $n;
}
