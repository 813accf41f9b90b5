# Endless body for G4; /sleep answers after 0.3 s for the concurrency check;
# /nap after QUERY_STRING seconds (Describe.running, SIGUSR1).
class Endless
  def each
    i = 0
    loop do
      yield "chunk #{i += 1}\n"
      sleep 0.01
    end
  end

  def close
    $stderr.puts 'endless body closed'
  end
end

run(lambda do |env|
  case env['PATH_INFO']
  when '/sleep'
    sleep 0.3
    [200, {}, ['slept']]
  when '/nap'
    sleep Float(env['QUERY_STRING'])
    [200, {}, ['napped']]
  when '/post'
    [200, {}, [env['rack.input'].read]]
  else
    [200, { 'Content-Type' => 'text/plain' }, Endless.new]
  end
end)
