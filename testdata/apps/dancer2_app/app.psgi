# A Dancer2 app (Debian's libdancer2-perl) for the e2e tests: routes,
# params, JSON, upload, streaming, redirect and error pages.
use strict;
use warnings;
use Dancer2;
use Digest::SHA qw(sha256_hex);
use JSON::PP ();

set show_errors  => 0;    # error pages must not leak the exception
set logger       => 'null';

my $json = JSON::PP->new->canonical->utf8;

get '/hello/:name' => sub {
    content_type 'text/plain';
    return 'Hello, ' . route_parameters->get('name') . '!';
};

get '/params' => sub {
    content_type 'application/json';
    my $q = query_parameters;
    return $json->encode({ map { $_ => [ $q->get_all($_) ] } $q->keys });
};

post '/json' => sub {
    content_type 'application/json';
    my $in = $json->decode(request->body);
    return $json->encode({ received => $in, method => request->method });
};

post '/form' => sub {
    content_type 'application/json';
    my $b = body_parameters;
    return $json->encode({ map { $_ => [ $b->get_all($_) ] } $b->keys });
};

post '/upload' => sub {
    content_type 'application/json';
    my $file = upload('file') or send_error('no file', 400);
    my $data = $file->content;
    return $json->encode({ name => $file->basename, size => length($data), sha256 => sha256_hex($data) });
};

get '/stream' => sub {
    delayed {
        content_type 'text/plain';
        response_header 'X-Accel-Buffering' => 'no';
        flush;
        for my $i (1 .. 3) {
            content "tick $i\n";
            sleep 1 if $i < 3;
        }
        done;
    };
};

get '/redirect' => sub { redirect '/hello/redirected' };

# X4: ask the runner to exit after this response; bridge replaces it.
get '/harakiri' => sub {
    content_type 'text/plain';
    request->env->{'psgix.harakiri.commit'} = 1 if request->env->{'psgix.harakiri'};
    return "pid $$ retiring\n";
};

get '/die' => sub { die "secret failure detail\n" };

1;
dance;
