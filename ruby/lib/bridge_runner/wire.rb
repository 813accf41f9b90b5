# frozen_string_literal: true
# The Slot stream's messages (proto/bridge/v1/runner.proto) decoded and
# encoded by hand, without google-protobuf objects.
#
# Why: with google-protobuf 3.21 every submessage read (each Var of a
# request) makes a Ruby wrapper registered in a WeakMap, and every field is
# read through method_missing. Decoding a 14-var GET and reading its vars
# that way took ~20 µs and 80 objects; this decoder takes ~8 µs and 35
# objects (one String per name and value). ResponseFrames are written straight into one binary
# String: no message, arena or Header objects, and a 64 KiB body is copied
# once instead of three times.
#
# Only RequestFrame is decoded and only ResponseFrame is encoded here;
# Describe keeps the generated classes (runner_pb.rb).
module BridgeRunner
  module Wire
    EMPTY = ''.b.freeze

    # A decoded RequestHead. vars is flat: [name, value, name, value, ...],
    # binary Strings (not frozen), in arrival order.
    class Head
      attr_reader :request_id, :vars, :url_scheme, :content_length

      def initialize(request_id, vars, url_scheme, content_length)
        @request_id = request_id
        @vars = vars
        @url_scheme = url_scheme
        @content_length = content_length
      end
    end

    # A decoded RequestFrame: head (Head or nil), body (String or nil), end.
    class Request
      attr_reader :head, :body, :end

      def initialize(head, body, fin)
        @head = head
        @body = body
        @end = fin
      end

      # Wire.decode_request under a message class's name (bench/hotpath.rb).
      def self.decode(bytes) = Wire.decode_request(bytes)
    end

    # An encoded ResponseFrame. encode is the identity (bench/hotpath.rb
    # marshals a frame as o.class.encode(o)).
    class Bytes < String
      def self.encode(s) = s
    end

    module_function

    # Reads the varint at i. Returns (value << 4) | bytes_read, so that no
    # Array is allocated (values up to 64 bits; the shift makes a Bignum only
    # for the 10-byte varint of a negative int64).
    def varint_at(s, i)
      r = 0
      sh = 0
      n = 0
      loop do
        b = s.getbyte(i + n)
        raise ArgumentError, 'truncated varint' if b.nil?
        n += 1
        r |= (b & 0x7f) << sh
        return (r << 4) | n if b < 0x80
        sh += 7
        raise ArgumentError, 'varint too long' if n >= 10
      end
    end

    # Skips a field of wire type wt whose value starts at i; returns the new i.
    def skip(s, i, wt)
      case wt
      when 0
        i + (varint_at(s, i) & 0xf)
      when 1 then i + 8
      when 5 then i + 4
      when 2
        v = varint_at(s, i)
        i + (v & 0xf) + (v >> 4)
      else
        raise ArgumentError, "unsupported wire type #{wt}"
      end
    end

    def int64(v) = v >= 0x8000000000000000 ? v - 0x10000000000000000 : v

    # RequestFrame: 1 head (RequestHead), 2 body (bytes), 3 end (bool).
    def decode_request(s)
      s = s.b unless s.encoding == Encoding::BINARY
      i = 0
      n = s.bytesize
      head = nil
      body = nil
      fin = false
      while i < n
        tag = s.getbyte(i)
        i += 1
        if tag >= 0x80
          v = varint_at(s, i - 1)
          tag = v >> 4
          i += (v & 0xf) - 1
        end
        case tag
        when 0x0a, 0x12
          len = s.getbyte(i)
          if len.nil?
            raise ArgumentError, 'truncated frame'
          elsif len < 0x80
            i += 1
          else
            v = varint_at(s, i)
            len = v >> 4
            i += v & 0xf
          end
          raise ArgumentError, 'truncated frame' if i + len > n
          if tag == 0x0a
            head = decode_head(s, i, i + len)
          else
            body = s.byteslice(i, len)
          end
          i += len
        when 0x18
          v = varint_at(s, i)
          fin = (v >> 4) != 0
          i += v & 0xf
        else
          i = skip(s, i, tag & 7)
        end
      end
      Request.new(head, body, fin)
    end

    # RequestHead: 1 request_id, 2 vars (Var: 1 name, 2 value), 3 url_scheme,
    # 4 content_length (int64).
    def decode_head(s, i, stop)
      rid = EMPTY
      scheme = EMPTY
      clen = 0
      vars = []
      while i < stop
        tag = s.getbyte(i)
        i += 1
        if tag >= 0x80
          v = varint_at(s, i - 1)
          tag = v >> 4
          i += (v & 0xf) - 1
        end
        if tag == 0x20
          v = varint_at(s, i)
          clen = int64(v >> 4)
          i += v & 0xf
          next
        end
        if (tag & 7) != 2
          i = skip(s, i, tag & 7)
          next
        end
        len = s.getbyte(i)
        if len < 0x80
          i += 1
        else
          v = varint_at(s, i)
          len = v >> 4
          i += v & 0xf
        end
        e = i + len
        raise ArgumentError, 'truncated head' if e > stop
        case tag
        when 0x12
          name = nil
          value = nil
          while i < e
            t = s.getbyte(i)
            l = s.getbyte(i + 1)
            if l.nil? || t >= 0x80 || l >= 0x80
              v = varint_at(s, i)
              t = v >> 4
              i += v & 0xf
              if (t & 7) != 2
                i = skip(s, i, t & 7)
                next
              end
              v = varint_at(s, i)
              l = v >> 4
              i += v & 0xf
            else
              i += 2
              if (t & 7) != 2
                i = skip(s, i - 1, t & 7)
                next
              end
            end
            raise ArgumentError, 'truncated var' if i + l > e
            if t == 0x0a
              name = s.byteslice(i, l)
            elsif t == 0x12
              value = s.byteslice(i, l)
            end
            i += l
          end
          vars << (name || +''.b) << (value || +''.b)
        when 0x0a
          rid = s.byteslice(i, len).force_encoding(Encoding::UTF_8)
        when 0x1a
          scheme = s.byteslice(i, len).force_encoding(Encoding::UTF_8)
        end
        i = e
      end
      Head.new(rid, vars, scheme, clen)
    end

    # Appends v as a varint (v >= 0; a negative int64 as its 10-byte form).
    def put_varint(buf, v)
      v += 0x10000000000000000 if v.negative?
      while v >= 0x80
        buf << ((v & 0x7f) | 0x80)
        v >>= 7
      end
      buf << v
    end

    # Appends a length-delimited field (tag byte, length, bytes).
    def put_bytes(buf, tag, str)
      buf << tag
      put_varint(buf, str.bytesize)
      # A non-ASCII String of another encoding cannot be appended as is.
      buf << (str.encoding == Encoding::BINARY || str.ascii_only? ? str : str.b)
    end

    def varint_size(v)
      n = 1
      while v >= 0x80
        v >>= 7
        n += 1
      end
      n
    end

    # Size of a non-empty length-delimited field with a one-byte tag.
    def field_size(str)
      l = str.bytesize
      l.zero? ? 0 : 1 + varint_size(l) + l
    end

    # The encoded ResponseHead (status, reason, headers as [name, value]
    # pairs in a flat Array). A String; put it in a frame with response().
    def head(status, reason, headers)
      buf = String.new # binary; no capacity: keywords to a C method cost a Hash
      buf << 0x08
      put_varint(buf, status)
      put_bytes(buf, 0x12, reason) unless reason.empty?
      i = 0
      while i < headers.size
        name = headers[i]
        value = headers[i + 1]
        i += 2
        # Header: 1 name, 2 value.
        buf << 0x1a
        put_varint(buf, field_size(name) + field_size(value))
        put_bytes(buf, 0x0a, name) unless name.empty?
        put_bytes(buf, 0x12, value) unless value.empty?
      end
      buf
    end

    # An encoded ResponseFrame. head: from head(); body: String; file:
    # [path, offset, length]; error: [kind, message, traceback].
    def response(head: nil, body: nil, file: nil, error: nil, fin: false, abort: false, retire: false)
      buf = if body && body.bytesize > 4096
              Bytes.new(capacity: body.bytesize + (head ? head.bytesize : 0) + 32)
            else
              Bytes.new # String.new is binary
            end
      put_bytes(buf, 0x0a, head) if head
      put_bytes(buf, 0x12, body) if body && !body.empty?
      if file
        f = String.new(encoding: Encoding::BINARY)
        put_bytes(f, 0x0a, file[0]) unless file[0].empty?
        if file[1] != 0
          f << 0x10
          put_varint(f, file[1])
        end
        if file[2] != 0
          f << 0x18
          put_varint(f, file[2])
        end
        put_bytes(buf, 0x1a, f)
      end
      if error
        e = String.new(encoding: Encoding::BINARY)
        error.each_with_index do |str, k|
          str = str.to_s
          next if str.empty?
          str = str.dup.force_encoding(Encoding::UTF_8)
          str = str.scrub unless str.valid_encoding? # proto3 strings are UTF-8
          put_bytes(e, 0x0a + (8 * k), str)
        end
        put_bytes(buf, 0x22, e)
      end
      buf << 0x28 << 1 if fin
      buf << 0x30 << 1 if abort
      buf << 0x38 << 1 if retire
      buf
    end
  end
end
