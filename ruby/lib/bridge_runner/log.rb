# frozen_string_literal: true
# Structured logs: one JSON object per line on stderr (G8).
require 'json'
require 'time'

module BridgeRunner
  module Log
    LEVELS = { 'debug' => 0, 'info' => 1, 'warning' => 2, 'warn' => 2, 'error' => 3, 'fatal' => 4 }.freeze
    MAX_LINE = 16 * 1024
    @lock = Mutex.new
    @io = $stderr
    @threshold = LEVELS.fetch((ENV['BRIDGE_LOG_LEVEL'] || 'info').downcase, 1)

    class << self
      attr_accessor :io, :threshold

      def request_id
        Thread.current[:bridge_request_id]
      end

      def log(level, message, **fields)
        return if LEVELS.fetch(level, 1) < @threshold
        level = 'warn' if level == 'warning' # same level names as the other shims
        level = 'error' if level == 'fatal'
        message = message.to_s.dup.force_encoding(Encoding::UTF_8)
        message = message.scrub unless message.valid_encoding?
        if message.bytesize > MAX_LINE
          message = message.byteslice(0, MAX_LINE).scrub
          fields[:truncated] = true
        end
        rec = { 'ts' => Time.now.utc.iso8601(6), 'level' => level, 'message' => message,
                'runner' => 'rack', 'pid' => Process.pid }
        rid = fields.key?(:request_id) ? fields.delete(:request_id) : request_id
        rec['request_id'] = rid if rid
        fields.each { |k, v| rec[k.to_s] = v unless v.nil? }
        line = JSON.generate(rec) + "\n"
        @lock.synchronize do
          @io.write(line)
          @io.flush
        end
      rescue IOError, SystemCallError
        nil
      end

      %w[debug info warning error].each do |lvl|
        define_method(lvl) { |msg, **f| log(lvl, msg, **f) }
      end
    end

    # An IO-like object: whole lines become log records with a stream field.
    class LineWriter
      def initialize(stream, level = 'info')
        @stream = stream
        @level = level
        @buf = +''
        @lock = Mutex.new
      end

      def write(*strs)
        n = 0
        strs.each do |s|
          s = s.to_s
          n += s.bytesize
          lines = []
          @lock.synchronize do
            @buf << s.b
            while (i = @buf.index("\n"))
              lines << @buf.slice!(0, i + 1).chomp
            end
          end
          lines.each { |l| Log.log(@level, l, stream: @stream) }
        end
        n
      end

      def <<(s)
        write(s)
        self
      end

      def print(*a) = write(*a.map(&:to_s))
      def puts(*a)
        a = [''] if a.empty?
        a.flatten.each { |x| s = x.to_s; write(s.end_with?("\n") ? s : s + "\n") }
        nil
      end
      def printf(*a) = write(format(*a))

      def flush
        return self if @buf.empty? # after every request: skip the lock when there is nothing
        l = @lock.synchronize { @buf.empty? ? nil : @buf.slice!(0, @buf.bytesize) }
        Log.log(@level, l, stream: @stream) if l
        self
      end

      def sync = true
      def sync=(_v); end
      def fileno = nil
      def tty? = false
      def isatty = false
      def close; end
      def closed? = false
    end

    # rack.logger (R15).
    class RackLogger
      { debug: 'debug', info: 'info', warn: 'warning', error: 'error', fatal: 'fatal', unknown: 'error' }.each do |m, lvl|
        define_method(m) do |msg = nil, &blk|
          msg = blk.call if msg.nil? && blk
          Log.log(lvl, msg.to_s, stream: 'logger')
          true
        end
      end
    end
  end
end
