# Rack 3 style app: lowercase header names, Array values, streaming body.
run(lambda do |env|
  if env['PATH_INFO'] == '/stream'
    [200, { 'content-type' => 'text/plain' }, ->(stream) { stream.write('s1'); stream.write('s2'); stream.close }]
  else
    [200, { 'content-type' => 'text/plain', 'set-cookie' => %w[a=1 b=2] }, ["v=#{env.key?('rack.version')}"]]
  end
end)
