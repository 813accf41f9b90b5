# frozen_string_literal: true
# rack.input (R8): reads request body frames only as the app asks for them,
# keeps what it read so that rewind works (memory, then a Tempfile past 1 MiB).
require 'stringio'
require 'tempfile'

module BridgeRunner
  class Input
    SPILL = 1 << 20

    def initialize(first, reqs, content_length = -1)
      @reqs = reqs
      @content_length = content_length
      @io = nil # made on first use: a GET's input is never read
      @eof = first.end
      append(first.body)
    end

    # The buffer (StringIO or Tempfile).
    def io
      @io ||= begin
        sio = StringIO.new(+''.b)
        sio.binmode
        @content_length > SPILL ? spill(sio) : sio
      end
    end

    def read(len = nil, buf = nil)
      fill(len)
      buf ? io.read(len, buf) : io.read(len)
    end

    def gets(*args)
      fill_line
      io.gets(*args)
    end

    def each
      while (l = gets)
        yield l
      end
    end

    def rewind
      @io&.rewind
      0
    end

    def close; end
    def binmode? = true
    def external_encoding = Encoding::ASCII_8BIT
    def eof? = (@eof && (@io.nil? || @io.eof?))

    # Discards the frames the app did not read, up to the request's end.
    def drain
      until @eof
        f = @reqs.next
        @eof = f.end
      end
    end

    # Reads the whole body now (used by tests and by apps that want it all).
    def finish
      fill(nil)
      self
    end

    def dispose
      @io.close! if @io.is_a?(Tempfile)
    end

    private

    def available = @io ? @io.size - @io.pos : 0

    def fill(len)
      pull while !@eof && (len.nil? || available < len)
    end

    def fill_line
      pos = io.pos
      until @eof
        rest = @io.read
        @io.seek(pos)
        break if rest&.include?("\n")
        pull
      end
    end

    def pull
      f = begin
        @reqs.next
      rescue StopIteration
        @eof = true
        raise IOError, 'request body incomplete: the request stream ended'
      end
      @eof = f.end
      append(f.body)
    end

    def append(data)
      return if data.nil? || data.empty?
      io
      @io = spill(@io) if @io.is_a?(StringIO) && @io.size + data.bytesize > SPILL
      pos = @io.pos
      @io.seek(0, IO::SEEK_END)
      @io.write(data)
      @io.seek(pos)
    end

    def spill(sio)
      tf = Tempfile.new('bridge-rack-input', binmode: true)
      begin
        tf.unlink
      rescue StandardError
        nil
      end
      pos = sio.pos
      tf.write(sio.string)
      tf.seek(pos)
      tf
    end
  end
end
