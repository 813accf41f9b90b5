puts "HTTP/1.1 200 OK\r\n\r\n"
run lambda { |env| [200, { 'Content-Type' => 'text/plain' }, ["Hello, world!\n"]] }
