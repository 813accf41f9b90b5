# PS01–PS36 again, with nginx in front: the suite's client talks to nginx,
# which speaks uwsgi to bridge over TCP (docs/conformance.md "PS": the suite must
# pass behind nginx→uwsgi too). The fixture config uses Debian's stock
# uwsgi_params plus `merge_slashes off` (PS36) and `server_name 127.0.0.1`
# (PS11).
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use File::Spec;
use File::Temp qw(tempdir);
use Test::More;
use Test::TCP qw(empty_port wait_port);
use Plack::Test::Suite;

# bridge's binary: $BRIDGE_BIN, else the repository's bin/bridge (`make build`).
my $bin = $ENV{BRIDGE_BIN} // "$FindBin::Bin/../../bin/bridge";
if (!-x $bin) {
    fail("BRIDGE_BIN ($bin) is not an executable bridge binary: run `make build` and set BRIDGE_BIN=bin/bridge");
    done_testing;
    exit;
}
$ENV{BRIDGE_BIN} = File::Spec->rel2abs($bin);
my ($nginx) = grep { -x } ($ENV{NGINX} // (), '/usr/sbin/nginx', '/usr/bin/nginx');
if (!$nginx) {
    fail('nginx is not installed: run `make deps` (apt-get install nginx)');
    done_testing;
    exit;
}

my $dir      = tempdir(CLEANUP => 1);
my $upstream = empty_port();
my $front    = empty_port({ port => $upstream + 1 });
my $user     = $> == 0 ? 'user root;' : '';
open my $conf, '>', "$dir/nginx.conf" or die $!;
print $conf <<"CONF";
$user
daemon off;
master_process off;
worker_processes 1;
pid $dir/nginx.pid;
error_log $dir/error.log;
events { worker_connections 256; }
http {
    access_log off;
    client_body_temp_path $dir;
    server {
        listen 127.0.0.1:$front;
        server_name 127.0.0.1;
        merge_slashes off;
        location / {
            include /etc/nginx/uwsgi_params;
            uwsgi_pass 127.0.0.1:$upstream;
        }
    }
}
CONF
close $conf;

my $pid = fork // die "fork: $!";
if (!$pid) {
    exec $nginx, '-p', $dir, '-c', "$dir/nginx.conf" or die "exec nginx: $!";
}
wait_port({ port => $front, max_wait => 10 }) or BAIL_OUT("nginx did not start: " . slurp("$dir/error.log"));

Plack::Test::Suite->run_server_tests('Bridge', $upstream, $front, uwsgi => 1);

kill 'TERM', $pid;
waitpid $pid, 0;
done_testing;

sub slurp { open my $f, '<', shift or return ''; local $/; <$f> }
