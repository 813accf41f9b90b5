# Env-dump Rack app: answers with the request's env as JSON.
#
# The same file runs under bridge (--runner ruby:config.ru) and under uWSGI
# (--plugin rack_ruby31 --rack config.ru); e2e/uwsgi_environ_test.go
# compares the two dumps. Every value is written as a string, in the same
# notation as app.py and app.psgi:
#
# - a String is written byte by byte, whatever its encoding: bytes 0x20-0x7e
#   except backslash as they are, everything else as \xHH;
# - anything else as a type description: <bool true|false>, <integer N>,
#   <array [1,3]>, <nil>, <object CLASS> (<object IO>, <object StringIO>, ...).
#
# When ENVDUMP_DIR is set and the request has an X-Envdump-Token header, the
# dump is also written to ENVDUMP_DIR/TOKEN.json (HEAD bodies are dropped).
require 'json'

module EnvDump
  TOKEN = /\A[A-Za-z0-9_.-]{1,64}\z/

  def self.escape(s)
    s.b.each_byte.map { |c| c >= 0x20 && c < 0x7f && c != 0x5c ? c.chr : format('\\x%02x', c) }.join
  end

  def self.describe(v)
    case v
    when String then escape(v)
    when true, false then "<bool #{v}>"
    when nil then '<nil>'
    when Integer then "<integer #{v}>"
    when Array then "<array [#{v.map { |x| describe(x) }.join(',')}]>"
    else "<object #{v.class}>"
    end
  end

  def self.call(env)
    n = 0
    if (input = env['rack.input'])
      while (chunk = input.read(65_536))
        break if chunk.empty?
        n += chunk.bytesize
      end
    end
    dump = env.keys.sort.to_h { |k| [k.to_s, describe(env[k])] }
    dump['envdump.body_length'] = n.to_s
    out = "#{JSON.pretty_generate(dump.sort.to_h)}\n".b
    token = env['HTTP_X_ENVDUMP_TOKEN'].to_s
    dir = ENV['ENVDUMP_DIR']
    File.binwrite(File.join(dir, "#{token}.json"), out) if dir && !dir.empty? && TOKEN.match?(token)
    [200, { 'Content-Type' => 'application/json', 'Content-Length' => out.bytesize.to_s }, [out]]
  end
end

run EnvDump
