# frozen_string_literal: true

module BridgeRunner
  # Go's duration format, as bridge writes BRIDGE_GRACE (time.Duration.String:
  # "30s", "1m30s", "500ms"). The same algorithm as Go's time.ParseDuration,
  # so that the shims and bridge agree on every value; the shared cases are
  # in testdata/durations.txt. Matched as bytes: the environment holds
  # U+00B5 and U+03BC in UTF-8.
  module Duration
    UNITS = { 'ns' => 1, 'us' => 1_000, "\u00b5s".b => 1_000, "\u03bcs".b => 1_000, 'ms' => 1_000_000,
              's' => 1_000_000_000, 'm' => 60_000_000_000, 'h' => 3_600_000_000_000 }.freeze
    LIMIT = 1 << 63

    module_function

    # Nanoseconds in text, an Integer; ArgumentError if it is not a Go duration.
    def parse(text)
      s = text.b
      neg = false
      if s.start_with?('-', '+')
        neg = s[0] == '-'
        s = s[1..]
      end
      return 0 if s == '0'
      raise ArgumentError, "invalid duration #{text.inspect}" if s.empty?

      total = 0
      until s.empty?
        m = /\A([0-9]*)(?:\.([0-9]*))?([^0-9.]*)/n.match(s)
        whole, frac, unit_name = m[1], m[2] || '', m[3]
        s = m.post_match
        raise ArgumentError, "invalid duration #{text.inspect}" if whole.empty? && frac.empty?

        unit = UNITS[unit_name] or raise ArgumentError, "invalid duration #{text.inspect}: missing or unknown unit"
        v = whole.to_i * unit
        # Go keeps fraction digits while they fit in 63 bits and scales in
        # floating point, truncating.
        f = 0
        scale = 1.0
        frac.each_char do |d|
          break if f > (LIMIT - 1) / 10

          f = f * 10 + d.to_i
          scale *= 10
        end
        v += (f.to_f * (unit.to_f / scale)).to_i if f.positive?
        total += v
        raise ArgumentError, "invalid duration #{text.inspect}: out of range" if total > LIMIT
      end
      return -total if neg
      raise ArgumentError, "invalid duration #{text.inspect}: out of range" if total > LIMIT - 1

      total
    end
  end
end
