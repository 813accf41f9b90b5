# A Mojolicious::Lite app (Debian's libmojolicious-perl) served through
# Mojo's own PSGI adapter, for the e2e tests.
use strict;
use warnings;
use Mojolicious::Lite -signatures;
use Mojo::Server::PSGI;
use Digest::SHA qw(sha256_hex);

app->log->level('fatal');    # errors reach bridge's log through psgi.errors
app->mode('production');     # no exception details in error pages

get '/hello/:name' => sub ($c) { $c->render(text => 'Hello, ' . $c->param('name') . '!') };

get '/params' => sub ($c) {
    my $p = $c->req->query_params;
    $c->render(json => { map { $_ => $p->every_param($_) } @{ $p->names } });
};

post '/json' => sub ($c) { $c->render(json => { received => $c->req->json, method => $c->req->method }) };

post '/upload' => sub ($c) {
    my $up = $c->req->upload('file') or return $c->render(text => 'no file', status => 400);
    my $data = $up->slurp;
    $c->render(json => { name => $up->filename, size => length($data), sha256 => sha256_hex($data) });
};

# Streaming through Mojo's PSGI adapter: each getline of the PSGI body
# emits Mojo's drain event, which runs the next write callback, so chunks go
# out one by one as they are produced. (write_chunk would chunk-encode into
# the body itself, and IOLoop timers never fire under a blocking server, so
# the pauses here are plain sleeps, as real work would be.)
get '/stream' => sub ($c) {
    $c->res->headers->content_type('text/plain');
    $c->res->headers->content_length(21);
    $c->write("tick 1\n" => sub ($c, @) {
        sleep 1;
        $c->write("tick 2\n" => sub ($c, @) { sleep 1; $c->write("tick 3\n") });
    });
};

get '/redirect' => sub ($c) { $c->redirect_to('/hello/redirected') };

get '/die' => sub ($c) { die "secret failure detail\n" };

Mojo::Server::PSGI->new(app => app)->to_psgi_app;
