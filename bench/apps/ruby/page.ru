# The bench's "page" workload in Ruby: a Sinatra route rendering an ERB view
# inside a layout (20 items, escaping, number formatting). GET /page?user=NAME.
# Same page as page.py (Flask) and page.psgi (Dancer2).
require_relative "page_app"
run PageApp
