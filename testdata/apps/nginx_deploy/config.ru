# Rack app for the uwsgi_modifier1 7 check of e2e/nginx_deploy_test.go.
run ->(env) { [200, { 'content-type' => 'text/plain' }, ["rack #{env['PATH_INFO']}\n"]] }
