# PS01-PS36: the 36 cases of Plack::Test::Suite (1.0050), in order, run
# through the PSGI layer with the app wrapped in Plack::Middleware::Lint
# (P25). A small fake front turns each HTTP::Request into the RequestFrames
# Go would send and the ResponseFrames back into an HTTP::Response. The
# same suite through the real bridge binary is the Go side's e2e test.
use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use HTTP::Response;
use Plack::Test::Suite;
use Plack::Middleware::Lint;
use Bridge::Runner::PSGI;
use FakeSlot qw(request_frames response_of);

my $app  = Plack::Middleware::Lint->wrap(Plack::Test::Suite->test_app_handler);
my $psgi = Bridge::Runner::PSGI->new(app => $app, workers => 2);

sub front {
    my $req = shift;
    my $uri = $req->uri;
    my @headers;
    $req->headers->scan(sub { push @headers, @_ });
    push @headers, Host => $uri->host_port;
    my @frames = request_frames(
        method      => $req->method,
        path        => $uri->path,
        query       => $uri->query // '',
        headers     => \@headers,
        body        => $req->content,
        server_name => $uri->host,
        server_port => $uri->port,
        rid         => "ps-" . ($req->header('X-Plack-Test') // 'x'),
    );
    my $slot = FakeSlot->new(frames => [ @frames[ 1 .. $#frames ] ]);
    my $result = $psgi->handle($slot, $frames[0]);
    my $r = response_of($slot->sent);
    my $res;
    if ($r->{error} && !defined $r->{status}) {
        # What Go writes for an error before the head (G2).
        $res = HTTP::Response->new(500, 'Internal Server Error',
            [ 'Content-Type' => 'text/plain; charset=utf-8' ], "Internal Server Error\n");
    }
    else {
        $res = HTTP::Response->new($r->{status}, $r->{reason}, $r->{headers}, $r->{body});
        if (my $f = $r->{file}) {
            open my $fh, '<:raw', $f->{path} or die "$f->{path}: $!";
            seek $fh, $f->{offset}, 0;
            local $/;
            my $data = <$fh> // '';
            $data = substr($data, 0, $f->{length}) if $f->{length} >= 0;
            $res->content($res->content . $data);
        }
    }
    $result->{response}->close_body if $result->{response};
    $res->request($req);
    return $res;
}

my @tests = @Plack::Test::Suite::TEST;
is scalar(@tests), 36, 'Plack::Test::Suite 1.0050 has 36 cases';
for my $i (0 .. $#tests) {
    my ($name, $client) = @{ $tests[$i] };
    my $id = sprintf 'PS%02d', $i + 1;
    subtest "$id $name" => sub {
        $client->(sub {
            my $req = shift;
            $req->header('X-Plack-Test' => $i);
            front($req);
        });
    };
}

done_testing;
