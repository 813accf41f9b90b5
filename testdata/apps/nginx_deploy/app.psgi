# PSGI app for the uwsgi_modifier1 5 check of e2e/nginx_deploy_test.go.
my $app = sub {
    my $env = shift;
    return [200, ['Content-Type' => 'text/plain'], ["psgi $env->{PATH_INFO}\n"]];
};
