# A minimal single-file Rails app (Debian's ruby-rails) for the e2e tests:
# routing, params, JSON, a redirect and an error page through Rails' own
# middleware stack.
require 'action_controller/railtie'

class E2ERails < Rails::Application
  config.eager_load = false
  config.logger = Logger.new(nil)
  config.secret_key_base = 'e2e-rails-secret-' + ('x' * 64)
  config.hosts.clear
  config.consider_all_requests_local = false # no exception details in pages
  config.action_dispatch.show_exceptions = true

  routes.append do
    get '/hello/:name' => 'greetings#show'
    get '/params' => 'greetings#params_echo'
    post '/json' => 'greetings#json_echo'
    get '/redirect' => 'greetings#moved'
    get '/die' => 'greetings#die'
  end
end

class GreetingsController < ActionController::Base
  protect_from_forgery with: :null_session

  def show
    render plain: "Hello, #{params[:name]}!"
  end

  def params_echo
    render json: Rack::Utils.parse_query(request.query_string).transform_values { |v| Array(v) }
  end

  def json_echo
    render json: { received: JSON.parse(request.raw_post), method: request.request_method }
  end

  def moved
    redirect_to '/hello/redirected'
  end

  def die
    raise 'secret failure detail'
  end
end

E2ERails.initialize!
run E2ERails
