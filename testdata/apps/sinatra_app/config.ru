# A Sinatra app (Debian's ruby-sinatra) for the e2e tests: params, JSON,
# redirect, sessions/cookies, streaming, upload and an error page.
require 'sinatra/base'
require 'json'
require 'digest'

class E2EApp < Sinatra::Base
  set :show_exceptions, false
  set :raise_errors, false
  set :dump_errors, false
  set :logging, false
  enable :sessions
  set :session_secret, 'e2e-test-secret-' + ('x' * 64)

  get '/hello/:name' do
    content_type 'text/plain'
    "Hello, #{params[:name]}!"
  end

  get '/params' do
    content_type :json
    Rack::Utils.parse_query(request.query_string).transform_values { |v| Array(v) }.to_json
  end

  post '/json' do
    content_type :json
    { received: JSON.parse(request.body.read), method: request.request_method }.to_json
  end

  post '/upload' do
    content_type :json
    file = params[:file] or halt 400, 'no file'
    data = file[:tempfile].read
    { name: file[:filename], size: data.bytesize, sha256: Digest::SHA256.hexdigest(data) }.to_json
  end

  get '/count' do
    session[:n] = (session[:n] || 0) + 1
    content_type 'text/plain'
    "count #{session[:n]}"
  end

  get '/stream' do
    content_type 'text/plain'
    headers 'X-Accel-Buffering' => 'no'
    stream do |out|
      (1..3).each do |i|
        out << "tick #{i}\n"
        sleep 1 if i < 3
      end
    end
  end

  get '/redirect' do
    redirect '/hello/redirected'
  end

  get '/die' do
    raise 'secret failure detail'
  end

  error do
    status 500
    'Something went wrong'
  end
end

run E2EApp
