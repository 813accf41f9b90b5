require "sinatra/base"

# The Sinatra app behind page.ru.
class PageApp < Sinatra::Base
  set :views, File.join(__dir__, "views")
  set :environment, :production
  set :logging, false
  set :show_exceptions, false
  set :dump_errors, false

  TAGS = %w[new sale popular limited].freeze

  helpers do
    def h(text)
      Rack::Utils.escape_html(text.to_s)
    end
  end

  get "/page" do
    @user = params["user"] || "guest"
    @title = "Catalogue"
    @items = (1..20).map do |i|
      { id: i, name: "Item #{i} & co", price: i * 3.25,
        tags: [TAGS[i % 4], TAGS[(i + 1) % 4]], in_stock: i % 3 != 0 }
    end
    @total = @items.select { |it| it[:in_stock] }.sum { |it| it[:price] }
    erb :page
  end
end
