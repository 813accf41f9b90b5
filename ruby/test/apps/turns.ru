# For the gate tests: how many requests are in the app at once (the body),
# and which requests reached it (a log line each). Sleeps QUERY_STRING
# seconds (0.1 by default).
lock = Mutex.new
inside = 0
run(lambda do |env|
  n = lock.synchronize { inside += 1 }
  $stderr.puts "app got #{env['bridge.request_id']}"
  begin
    sleep Float(env['QUERY_STRING'].empty? ? '0.1' : env['QUERY_STRING'])
  ensure
    lock.synchronize { inside -= 1 }
  end
  [200, {}, [n.to_s]]
end)
