# frozen_string_literal: true
require 'helper'
require 'tmpdir'
require 'timeout'
require 'grpc'

# ruby-grpc as the client of the runner's services (the runner itself serves
# them on its native transport), with protobuf frames both ways.
class TestRunnerService
  include GRPC::GenericService
  self.marshal_class_method = :encode
  self.unmarshal_class_method = :decode
  self.service_name = 'bridge.v1.Runner'
  rpc :Describe, Bridge::V1::DescribeRequest, Bridge::V1::DescribeResponse
  rpc :Slot, stream(Bridge::V1::RequestFrame), stream(Bridge::V1::ResponseFrame)
end

class IntegrationTest < Minitest::Test
  include SlotHelpers
  ROOT = File.expand_path('..', __dir__)

  def start(app, threads: 2, slots: nil, extra: {})
    @dir = Dir.mktmpdir('rack-runner')
    env = extra.merge('BRIDGE_PLUGIN' => 'runner-v1', 'PLUGIN_UNIX_SOCKET_DIR' => @dir, 'BRIDGE_THREADS' => threads.to_s,
            'BRIDGE_WORKERS' => '1', 'RUBYLIB' => File.join(ROOT, 'lib'))
    env['BRIDGE_SLOTS'] = slots.to_s if slots
    @out_r, out_w = IO.pipe
    @err_r, err_w = IO.pipe
    @pid = Process.spawn(env, RbConfig.ruby, File.join(ROOT, 'bin/bridge-rack-runner'), '--app', app,
                         chdir: File.join(ROOT, 'test/apps'), out: out_w, err: err_w)
    out_w.close
    err_w.close
    @err = +''
    # Line by line, so that a test can wait for a log line.
    @err_thread = Thread.new { @err_r.each_line { |l| @err << l } }
    line = Timeout.timeout(15) { @out_r.gets }
    line
  end

  def stop
    return unless @pid
    Process.kill('TERM', @pid)
    st = Timeout.timeout(10) { Process.wait2(@pid)[1] }
    @pid = nil
    st
  rescue Timeout::Error
    Process.kill('KILL', @pid)
    Process.wait(@pid)
    @pid = nil
    nil
  end

  def teardown
    stop
    @err_thread&.join(5)
    FileUtils.rm_rf(@dir) if @dir
  end

  def test_G24_handshake_describe_and_slot
    line = start('hello.ru')
    assert_match(%r{\A1\|1\|unix\|/.+\|grpc\n\z}, line)
    path = line.split('|')[3]
    stub = TestRunnerService.rpc_stub_class.new("unix:#{path}", :this_channel_is_insecure, timeout: 10)
    d = stub.describe(Bridge::V1::DescribeRequest.new)
    assert_equal 'ruby', d.language
    assert_equal 'rack/2.2', d.interface
    assert_equal 2, d.threads
    assert_equal 2, d.slots, 'no BRIDGE_SLOTS: one stream per thread'
    assert_equal @pid, d.pid
    frames = [Bridge::V1::RequestFrame.new(head: head(path: '/x'), end: true)]
    out = stub.slot(frames).to_a
    assert_equal 1, out.size
    assert_equal 200, out[0].head.status
    assert_equal "Hello, world!\n", out[0].body
    assert out[0].end
    st = stop
    assert st&.success?, 'exit 0 on SIGTERM'
    @err_thread.join(5)
    # G7: the app's print reached the logs, not the handshake.
    assert(@err.lines.any? { |l| l.include?('"stream":"stdout"') && l.include?('HTTP/1.1 200 OK') })
    assert(@err.lines.all? { |l| JSON.parse(l) rescue false })
  end

  def test_G24_load_failure_exits_1_with_json_line
    line = start('broken.ru')
    assert_nil line
    st = Timeout.timeout(10) { Process.wait2(@pid)[1] }
    @pid = nil
    assert_equal 1, st.exitstatus
    @err_thread.join(5)
    rec = JSON.parse(@err.lines.find { |l| l.include?('cannot load') })
    assert_equal 'error', rec['level']
    assert_match(/cannot load broken.ru: /, rec['message'])
  end

  def stub_for(line)
    path = line.split('|')[3]
    TestRunnerService.rpc_stub_class.new("unix:#{path}", :this_channel_is_insecure, timeout: 10)
  end

  def raw_call(line, method)
    path = line.split('|')[3]
    GRPC::ClientStub.new("unix:#{path}", :this_channel_is_insecure, timeout: 10)
                    .request_response(method, ''.b, ->(s) { s }, ->(s) { s })
  end

  def test_G4_G5_cancel_closes_endless_body_once
    stub = stub_for(start('stream.ru'))
    q = Queue.new
    q << Bridge::V1::RequestFrame.new(head: head(path: '/'), end: true)
    reqs = Enumerator.new { |y| loop { x = q.pop; break if x == :done; y << x } }
    op = stub.slot(reqs, return_op: true)
    en = op.execute
    assert_equal "chunk 1\n", en.next.body
    op.cancel
    q << :done
    deadline = Time.now + 5
    sleep 0.05 until @err.include?('endless body closed') || Time.now > deadline || !@err_thread.alive?
    sleep 0.2
    assert stop&.success?, "exit 0 on SIGTERM"
    @err_thread.join(5)
    assert_equal 1, @err.scan('endless body closed').size
  end

  def test_slots_run_in_parallel_and_serve_requests_in_sequence
    line = start('stream.ru', threads: 2)
    stub = stub_for(line)
    t0 = Time.now
    res = 2.times.map do
      Thread.new do
        stub.slot([Bridge::V1::RequestFrame.new(head: head(path: '/sleep'), end: true)]).to_a
      end
    end.map(&:value)
    assert_operator Time.now - t0, :<, 0.55
    assert(res.all? { |o| o.map(&:body).join == 'slept' })
    frames = [Bridge::V1::RequestFrame.new(head: head(path: '/post', method: 'POST', clen: 4), body: 'ab'),
              Bridge::V1::RequestFrame.new(body: 'cd'), Bridge::V1::RequestFrame.new(end: true),
              Bridge::V1::RequestFrame.new(head: head(path: '/post', method: 'POST', clen: 1), body: 'z', end: true)]
    out = stub.slot(frames).to_a
    assert_equal %w[abcd z], out.map(&:body)
  end

  def test_go_plugin_health_and_shutdown
    line = start('hello.ru')
    assert_equal "\x08\x01".b, raw_call(line, '/grpc.health.v1.Health/Check')
    assert_equal '', raw_call(line, '/plugin.GRPCController/Shutdown')
    st = Timeout.timeout(10) { Process.wait2(@pid)[1] }
    @pid = nil
    assert st.success?
  end

  def test_R1_R19_R24_rack3_mode_by_env
    line = start('rack3.ru', extra: { 'BRIDGE_RACK_SPEC' => '3' })
    stub = stub_for(line)
    assert_equal 'rack/3.0', stub.describe(Bridge::V1::DescribeRequest.new).interface
    out = stub.slot([Bridge::V1::RequestFrame.new(head: head(path: '/'), end: true)]).to_a
    assert_equal 'v=false', out.map(&:body).join
    assert_equal [%w[content-type text/plain], %w[set-cookie a=1], %w[set-cookie b=2]],
                 out[0].head.headers.map { |h| [h.name, h.value] }
    out = stub.slot([Bridge::V1::RequestFrame.new(head: head(path: '/stream'), end: true)]).to_a
    assert_equal %w[s1 s2], out.map(&:body).reject(&:empty?)
    assert out.last.end
  end

  def test_G25_sigterm_finishes_in_flight_request
    stub = stub_for(start('stream.ru'))
    t = Thread.new { stub.slot([Bridge::V1::RequestFrame.new(head: head(path: '/sleep'), end: true)]).to_a }
    sleep 0.15
    st = stop
    assert_equal 'slept', t.value.map(&:body).join
    assert st&.success?
  end

  def wait_until(what, secs = 5)
    deadline = Time.now + secs
    sleep 0.02 until yield || Time.now > deadline
    assert yield, "timed out waiting for #{what}"
  end

  def nap(stub, secs, rid)
    reqs = [Bridge::V1::RequestFrame.new(head: head(path: '/nap', query: secs.to_s, request_id: rid), end: true)]
    op = stub.slot(reqs, return_op: true)
    [op, Thread.new { op.execute.to_a rescue $! }]
  end

  def test_describe_running_keeps_a_cancelled_request_until_the_app_returns
    stub = stub_for(start('stream.ru'))
    describe = -> { stub.describe(Bridge::V1::DescribeRequest.new).running.to_a }
    assert_equal [], describe.call
    op, t = nap(stub, 1.5, 'rid-nap')
    wait_until('the request to start') { describe.call == ['rid-nap'] }
    op.cancel
    t.join(5)
    sleep 0.2
    assert_equal ['rid-nap'], describe.call, 'the app still sleeps'
    wait_until('the cancelled request to leave') { describe.call.empty? }
    out = stub.slot([Bridge::V1::RequestFrame.new(head: head(path: '/post', method: 'POST', clen: 1), body: 'z', end: true)]).to_a
    assert_equal 'z', out.map(&:body).join
  end

  def test_sigusr1_logs_every_thread_while_the_app_runs
    stub = stub_for(start('stream.ru'))
    _op, t = nap(stub, 1, 'rid-usr1')
    wait_until('the request to start') { stub.describe(Bridge::V1::DescribeRequest.new).running.to_a == ['rid-usr1'] }
    Process.kill('USR1', @pid)
    assert_equal 'napped', t.value.map(&:body).join, 'the request completes'
    assert_equal 'ruby', stub.describe(Bridge::V1::DescribeRequest.new).language, 'the runner still answers'
    assert stop&.success?
    @err_thread.join(5)
    dumps = @err.lines.map { |l| JSON.parse(l) }.select { |r| r['message'] == 'stack dump (SIGUSR1)' }
    assert_operator dumps.size, :>=, 3, 'main, the app thread, the log and watch threads'
    app = dumps.select { |r| r['request_id'] == 'rid-usr1' }
    assert_equal 1, app.size, 'the thread in the app carries its request id'
    assert_match(/stream\.ru:\d+:in `sleep'/, app[0]['traceback'])
    assert(dumps.any? { |r| r['traceback'].include?('main.rb') }, 'the main thread')
  end

  def test_one_thread_four_slots_serves_one_request_at_a_time
    line = start('turns.ru', threads: 1, slots: 4)
    stub = stub_for(line)
    t0 = Time.now
    res = 4.times.map do |i|
      Thread.new { stub.slot([Bridge::V1::RequestFrame.new(head: head(request_id: "rid-#{i}"), end: true)]).to_a }
    end.map(&:value)
    # Each body is how many requests were in the app when it entered.
    assert_equal %w[1 1 1 1], res.map { |o| o.map(&:body).join }, 'never two requests in the app at once'
    assert(res.all? { |o| o.last.end })
    assert_operator Time.now - t0, :>=, 0.4, 'four 0.1 s requests one after another'
    assert stop&.success?
    @err_thread.join(5)
    rec = @err.lines.map { |l| JSON.parse(l) }.find { |r| r['message'].start_with?('serving ') }
    assert_equal [1, 4], [rec['threads'], rec['slots']]
    assert_equal 4, @err.scan(/app got rid-\d/).size
  end

  def test_request_cancelled_while_it_waits_never_reaches_the_app
    stub = stub_for(start('turns.ru', threads: 1, slots: 2))
    assert_equal [1, 2], stub.describe(Bridge::V1::DescribeRequest.new).then { |d| [d.threads, d.slots] }
    describe = -> { stub.describe(Bridge::V1::DescribeRequest.new).running.to_a }
    _op, a = nap(stub, 1, 'rid-a')
    wait_until('rid-a to be in the app') { describe.call == ['rid-a'] }
    op, b = nap(stub, 0, 'rid-b')
    sleep 0.2 # rid-b waits in its stream's inbox for the one thread
    assert_equal ['rid-a'], describe.call, 'a waiting request is not in the app'
    op.cancel
    wait_until('rid-b to leave the queue', 2) { @err.include?('request cancelled before it started') }
    assert_equal ['rid-a'], describe.call, 'noticed while rid-a was still in the app'
    assert_equal '1', a.value.map(&:body).join
    assert_kind_of GRPC::Cancelled, b.value
    out = stub.slot([Bridge::V1::RequestFrame.new(head: head(request_id: 'rid-c'), end: true)]).to_a
    assert_equal '1', out.map(&:body).join, 'the turn rid-b gave up is not lost'
    assert stop&.success?
    @err_thread.join(5)
    refute_includes @err, 'app got rid-b'
    assert_includes @err, 'app got rid-c'
    rec = JSON.parse(@err.lines.find { |l| l.include?('request cancelled before it started') })
    assert_equal 'rid-b', rec['request_id']
  end

  def test_G25_sigterm_finishes_a_request_waiting_for_a_thread
    stub = stub_for(start('turns.ru', threads: 1, slots: 2))
    _op, a = nap(stub, 0.3, 'rid-a')
    wait_until('rid-a to be in the app') { stub.describe(Bridge::V1::DescribeRequest.new).running.to_a == ['rid-a'] }
    # Arrives before SIGTERM, waits for the one thread, and takes longer
    # than rid-a: the drain serves it whole.
    _op, b = nap(stub, 1.5, 'rid-b')
    sleep 0.1
    st = stop
    assert_equal %w[1 1], [a, b].map { |t| t.value.map(&:body).join }
    assert st&.success?
  end

  def test_bridge_retire_ends_with_retire_and_exits_0
    # env['bridge.retire'] (CONTRACT "Slots", retire): the end frame carries
    # retire; a request waiting for the thread behind it still completes; then
    # the process exits 0 by itself.
    stub = stub_for(start('retire.ru', threads: 1, slots: 2))
    before = stub.slot([Bridge::V1::RequestFrame.new(head: head(request_id: 'rid-0'), end: true)]).to_a
    refute before.last.retire
    a = Thread.new do
      stub.slot([Bridge::V1::RequestFrame.new(head: head(path: '/retire', query: '0.3', request_id: 'rid-a'), end: true)]).to_a
    end
    sleep 0.1
    b = Thread.new { stub.slot([Bridge::V1::RequestFrame.new(head: head(request_id: 'rid-b'), end: true)]).to_a }
    out = a.value
    assert_equal 'bye', out.map(&:body).join
    assert out.last.end && out.last.retire, 'the end frame says the runner retires'
    refute out[0...-1].any?(&:retire)
    out = b.value
    assert_equal 'hello', out.map(&:body).join
    refute out.last.retire
    st = Timeout.timeout(10) { Process.wait2(@pid)[1] }
    @pid = nil
    assert st.success?, 'exit 0'
    @err_thread.join(5)
    rec = @err.lines.map { |l| JSON.parse(l) }.find { |r| r['message'].start_with?('bridge.retire') }
    assert_equal 'rid-a', rec['request_id']
  end

  # runners/CONTRACT.md "Start-up": the same checks, in the same words, in
  # every shim: one error line, exit 1, nothing on stdout.
  NOT_BRIDGE = {
    'no cookie' => [{ 'BRIDGE_PLUGIN' => nil },
                    'bridge-rack-runner is a bridge runner plugin, started by bridge; BRIDGE_PLUGIN is not runner-v1'],
    'a wrong cookie' => [{ 'BRIDGE_PLUGIN' => 'runner-v2' },
                         'bridge-rack-runner is a bridge runner plugin, started by bridge; BRIDGE_PLUGIN is not runner-v1'],
    'protocol versions without 1' => [{ 'PLUGIN_PROTOCOL_VERSIONS' => '2,3' },
                                      'PLUGIN_PROTOCOL_VERSIONS is 2,3: this runner speaks protocol version 1 only'],
    'no socket directory' => [{ 'PLUGIN_UNIX_SOCKET_DIR' => nil },
                              "PLUGIN_UNIX_SOCKET_DIR is not set: bridge names the directory for the runner's socket"],
    'BRIDGE_GRACE not a Go duration' => [{ 'BRIDGE_GRACE' => '30' },
                                         'BRIDGE_GRACE=30 is not a duration such as 30s, 1m30s or 500ms'],
    'a negative BRIDGE_GRACE' => [{ 'BRIDGE_GRACE' => '-1s' },
                                  'BRIDGE_GRACE=-1s is not a duration such as 30s, 1m30s or 500ms'],
    # ruby-grpc's server is gone: asking for it is refused, not ignored.
    'BRIDGE_RB_SERVER=grpc' => [{ 'BRIDGE_RB_SERVER' => 'grpc' },
                                "BRIDGE_RB_SERVER=grpc: want native (ruby-grpc's server was removed)"]
  }.freeze

  def test_refuses_an_environment_bridge_did_not_make
    Dir.mktmpdir('rack-runner') do |dir|
      NOT_BRIDGE.each do |name, (env, message)|
        full = { 'BRIDGE_PLUGIN' => 'runner-v1', 'PLUGIN_PROTOCOL_VERSIONS' => '1', 'PLUGIN_UNIX_SOCKET_DIR' => dir,
                 'BRIDGE_GRACE' => nil, 'BRIDGE_RB_SERVER' => nil }.merge(env)
        out, err, st = Open3.capture3(full, RbConfig.ruby, File.join(ROOT, 'bin/bridge-rack-runner'), '--app', 'hello.ru',
                                      chdir: File.join(ROOT, 'test/apps'))
        assert_equal 1, st.exitstatus, name
        assert_equal '', out, name
        recs = err.lines.map { |l| JSON.parse(l) }
        assert_equal [['error', message]], recs.map { |r| [r['level'], r['message']] }, name
      end
    end
  end

  def test_protocol_versions_with_1_and_bridge_grace_as_a_go_duration_are_accepted
    line = start('hello.ru', extra: { 'PLUGIN_PROTOCOL_VERSIONS' => '3,1', 'BRIDGE_GRACE' => '1m30s',
                                      'BRIDGE_RB_SERVER' => 'native' })
    assert_match(/\A1\|1\|unix\|/, line)
    assert_match(%r{\Abridge-rack/\S+ protocol-http2/}, stub_for(line).describe(Bridge::V1::DescribeRequest.new).server)
  end

  def test_bridge_grace_bounds_the_wait_for_in_flight_requests
    stub = stub_for(start('stream.ru', extra: { 'BRIDGE_GRACE' => '300ms' }))
    _op, t = nap(stub, 3, 'rid-long')
    sleep 0.2
    began = Time.now
    st = stop
    assert st&.success?
    assert_operator Time.now - began, :<, 2.5, 'SIGTERM waited past BRIDGE_GRACE'
    t.join(5)
  end
end
require 'open3'
require 'fileutils'
