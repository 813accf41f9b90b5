# For the retire test: /retire sleeps QUERY_STRING seconds, then asks the
# runner to exit after its response (env['bridge.retire']); anything else
# answers "hello".
run(lambda do |env|
  next [200, {}, ['hello']] unless env['PATH_INFO'] == '/retire'
  sleep Float(env['QUERY_STRING'].empty? ? '0' : env['QUERY_STRING'])
  env['bridge.retire'].call
  [200, {}, ['bye']]
end)
