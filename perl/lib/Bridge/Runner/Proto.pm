package Bridge::Runner::Proto;
# The bridge.v1 messages (proto/bridge/v1/runner.proto), encoded and decoded
# by hand: Debian has no protobuf runtime for Perl. Only what the shim needs
# is here: RequestFrame (decode), ResponseFrame and DescribeResponse
# (encode), and go-plugin's two fixed replies.
#
# %FIELDS is the one place that knows field numbers; t/proto_fields.t checks
# it against runner.proto and t/proto_golden.t checks the bytes against the
# real protobuf runtime (python/bridge_runner/runner_pb2.py).
use strict;
use warnings;

use Exporter 'import';
our @EXPORT_OK = qw(
  decode_request_frame encode_response_frame encode_describe_response
  HEALTH_SERVING EMPTY
);

# message => { field => [number, type] }. Types as in the .proto.
our %FIELDS = (
    DescribeResponse => {
        language => [1, 'string'], language_version => [2, 'string'],
        interface => [3, 'string'], app => [4, 'string'],
        threads => [5, 'uint32'], pid => [6, 'int32'], server => [7, 'string'],
        running => [8, 'string'],    # repeated
        slots => [9, 'uint32'],
    },
    Var          => { name => [1, 'bytes'], value => [2, 'bytes'] },
    RequestHead  => {
        request_id => [1, 'string'], vars => [2, 'Var'],
        url_scheme => [3, 'string'], content_length => [4, 'int64'],
    },
    RequestFrame => { head => [1, 'RequestHead'], body => [2, 'bytes'], end => [3, 'bool'] },
    Header       => { name => [1, 'bytes'], value => [2, 'bytes'] },
    ResponseHead => { status => [1, 'uint32'], reason => [2, 'string'], headers => [3, 'Header'] },
    File         => { path => [1, 'string'], offset => [2, 'int64'], length => [3, 'int64'] },
    Error        => { kind => [1, 'string'], message => [2, 'string'], traceback => [3, 'string'] },
    ResponseFrame => {
        head => [1, 'ResponseHead'], body => [2, 'bytes'], file => [3, 'File'],
        error => [4, 'Error'], end => [5, 'bool'], abort => [6, 'bool'], retire => [7, 'bool'],
    },
);

# Tags (field number << 3 | wire type) as bytes, built from %FIELDS so that
# the encoders below cannot drift from it.
my %TAG;
for my $msg (keys %FIELDS) {
    while (my ($name, $f) = each %{ $FIELDS{$msg} }) {
        my ($num, $type) = @$f;
        my $wire = $type =~ /^(?:u?int(?:32|64)|bool)$/ ? 0 : 2;
        $TAG{"$msg.$name"} = _varint(($num << 3) | $wire);
    }
}
# Decoding is by field number.
my %NUM;
for my $msg (keys %FIELDS) {
    $NUM{$msg}{ $FIELDS{$msg}{$_}[0] } = $_ for keys %{ $FIELDS{$msg} };
}

# grpc.health.v1.HealthCheckResponse{status: SERVING}.
use constant HEALTH_SERVING => "\x08\x01";
# google.protobuf.Empty (plugin.GRPCController/Shutdown's reply).
use constant EMPTY => '';

sub _varint {
    my $n = shift;
    return chr($n) if $n >= 0 && $n < 0x80;
    # Negative int64/int32: ten bytes of two's complement, as protobuf does.
    $n = unpack('Q', pack('q', $n)) if $n < 0;
    my $out = '';
    while ($n >= 0x80) {
        $out .= chr(($n & 0x7f) | 0x80);
        $n >>= 7;
    }
    return $out . chr($n);
}

# Length-delimited field: tag, length, bytes. Strings must already be bytes.
sub _ld { $TAG{ $_[0] } . _varint(length $_[1]) . $_[1] }

# proto3 strings are UTF-8: character strings are encoded, byte strings
# that are not valid UTF-8 are taken as Latin-1.
sub _utf8 {
    my $s = shift;
    return '' unless defined $s;
    if (utf8::is_utf8($s)) {
        utf8::encode($s);
        return $s;
    }
    return $s if $s !~ /[\x80-\xff]/;
    my $copy = $s;
    return $s if utf8::decode($copy);
    utf8::upgrade($s);
    utf8::encode($s);
    return $s;
}

=head2 encode_response_frame(\%frame)

%frame: head => {status, reason, headers => [[name, value], ...]},
body, file => {path, offset, length}, error => {kind, message, traceback},
end, abort, retire. Header names/values and body must be byte strings.

=cut

# Tags of the fields encode_response_frame writes inline.
my ($STATUS_TAG, $REASON_TAG, $HEADER_TAG, $NAME_TAG, $VALUE_TAG, $HEAD_TAG, $BODY_TAG) =
  map { ord $TAG{$_} }
  qw(ResponseHead.status ResponseHead.reason ResponseHead.headers Header.name Header.value ResponseFrame.head ResponseFrame.body);

sub encode_response_frame {
    my $f   = shift;
    my $out = '';
    if (my $h = $f->{head}) {
        my $m = '';
        if (my $st = $h->{status}) {
            # Statuses are 200..999: a varint of two bytes.
            $m = $st < 0x80 ? pack('CC', $STATUS_TAG, $st)
              : $st < 0x4000 ? pack('CCC', $STATUS_TAG, ($st & 0x7f) | 0x80, $st >> 7)
              :                chr($STATUS_TAG) . _varint($st);
        }
        my $r = $h->{reason};
        if (defined $r && length $r) {
            $r = _utf8($r) if utf8::is_utf8($r) || $r =~ /[^\x00-\x7f]/;
            $m .= length $r < 0x80 ? pack('CC/a*', $REASON_TAG, $r) : _ld('ResponseHead.reason', $r);
        }
        for my $pair (@{ $h->{headers} || [] }) {
            my ($n, $v) = @$pair;
            my ($ln, $lv) = (length $n, length $v);
            if ($ln && $lv && $ln + $lv < 0x7c) {
                # Both fields and the Header itself with one-byte lengths.
                $m .= pack('CCCC/a*CC/a*', $HEADER_TAG, $ln + $lv + 4, $NAME_TAG, $n, $VALUE_TAG, $v);
                next;
            }
            my $hm = '';
            $hm .= _ld('Header.name',  $n) if $ln;
            $hm .= _ld('Header.value', $v) if $lv;
            $m .= _ld('ResponseHead.headers', $hm);
        }
        my $l = length $m;
        $out = ($l < 0x80 ? pack('CC', $HEAD_TAG, $l) : chr($HEAD_TAG) . _varint($l)) . $m;
    }
    my $body = $f->{body};
    if (defined $body && length $body) {
        my $l = length $body;
        $out .= ($l < 0x80 ? pack('CC', $BODY_TAG, $l) : chr($BODY_TAG) . _varint($l)) . $body;
    }
    if (my $file = $f->{file}) {
        my $m = '';
        $m .= _ld('File.path', _utf8($file->{path})) if length $file->{path};
        $m .= $TAG{'File.offset'} . _varint($file->{offset}) if $file->{offset};
        $m .= $TAG{'File.length'} . _varint($file->{length}) if $file->{length};
        $out .= _ld('ResponseFrame.file', $m);
    }
    if (my $e = $f->{error}) {
        my $m = '';
        for my $k (qw(kind message traceback)) {
            $m .= _ld("Error.$k", _utf8($e->{$k})) if defined $e->{$k} && length $e->{$k};
        }
        $out .= _ld('ResponseFrame.error', $m);
    }
    $out .= $TAG{'ResponseFrame.end'} . "\x01"   if $f->{end};
    $out .= $TAG{'ResponseFrame.abort'} . "\x01" if $f->{abort};
    $out .= $TAG{'ResponseFrame.retire'} . "\x01" if $f->{retire};
    return $out;
}

sub encode_describe_response {
    my $d   = shift;
    my $out = '';
    for my $k (qw(language language_version interface app)) {
        $out .= _ld("DescribeResponse.$k", _utf8($d->{$k})) if defined $d->{$k} && length $d->{$k};
    }
    $out .= $TAG{'DescribeResponse.threads'} . _varint($d->{threads}) if $d->{threads};
    $out .= $TAG{'DescribeResponse.pid'} . _varint($d->{pid})         if $d->{pid};
    $out .= _ld('DescribeResponse.server', _utf8($d->{server})) if defined $d->{server} && length $d->{server};
    # Repeated: every element goes out, an empty one too.
    $out .= _ld('DescribeResponse.running', _utf8($_)) for @{ $d->{running} || [] };
    $out .= $TAG{'DescribeResponse.slots'} . _varint($d->{slots}) if $d->{slots};
    return $out;
}

# -- decoding -----------------------------------------------------------------

# Walks the fields of one message: calls $cb->($number, $value) with the
# integer of a varint or the bytes of a length-delimited field. Unknown
# fields are skipped by their wire type; dies on malformed input.
sub _each_field {
    my ($buf, $cb) = @_;
    my $len = length $$buf;
    my $pos = 0;
    while ($pos < $len) {
        my $tag = _read_varint($buf, \$pos);
        my ($num, $wire) = ($tag >> 3, $tag & 7);
        die "protobuf: field number 0\n" unless $num;
        if ($wire == 0) {
            $cb->($num, _read_varint($buf, \$pos));
        }
        elsif ($wire == 2) {
            my $n = _read_varint($buf, \$pos);
            die "protobuf: truncated field $num\n" if $pos + $n > $len;
            # A copy, not substr() itself: passed as an argument, substr is
            # an lvalue bound to the buffer, and nested walks misread it.
            my $bytes = substr($$buf, $pos, $n);
            $pos += $n;
            $cb->($num, $bytes);
        }
        elsif ($wire == 1) { $pos += 8 }
        elsif ($wire == 5) { $pos += 4 }
        else { die "protobuf: unsupported wire type $wire (field $num)\n" }
        die "protobuf: truncated message\n" if $pos > $len;
    }
}

sub _read_varint {
    my ($buf, $pos) = @_;
    die "protobuf: truncated varint\n" if $$pos >= length $$buf;
    my $b = ord substr($$buf, $$pos++, 1);
    return $b if $b < 0x80;    # the usual case: tags and short lengths
    my ($v, $shift) = ($b & 0x7f, 7);
    while (1) {
        die "protobuf: truncated varint\n" if $$pos >= length $$buf;
        $b = ord substr($$buf, $$pos++, 1);
        $v |= ($b & 0x7f) << $shift if $shift < 64;
        return $v unless $b & 0x80;
        $shift += 7;
        die "protobuf: varint too long\n" if $shift > 63;
    }
}

sub _int64 { my $v = shift; $v >= 2**63 ? unpack('q', pack('Q', $v)) : $v }

# Field numbers of the decoded messages, from %FIELDS.
my ($RF_HEAD, $RF_BODY, $RF_END) = map { $FIELDS{RequestFrame}{$_}[0] } qw(head body end);
my ($RH_ID, $RH_VARS, $RH_SCHEME, $RH_LENGTH) =
  map { $FIELDS{RequestHead}{$_}[0] } qw(request_id vars url_scheme content_length);
my ($VAR_NAME, $VAR_VALUE) = map { $FIELDS{Var}{$_}[0] } qw(name value);
# Tag of the Var field, read inline by _decode_head.
my $VARS_TAG = ($RH_VARS << 3) | 2;
my ($RF_HEAD_TAG, $RF_BODY_TAG, $RF_END_TAG) = (($RF_HEAD << 3) | 2, ($RF_BODY << 3) | 2, $RF_END << 3);

=head2 decode_request_frame($bytes)

Returns { head => {request_id, vars => [[name, value], ...], url_scheme,
content_length} or absent, body => bytes, end => bool }. Values are byte
strings. content_length defaults to 0 as in proto3 (the head always sets it).

=cut

sub decode_request_frame {
    my $buf   = shift;
    my %frame = (body => '', end => 0);
    my ($pos, $len) = (0, length $buf);
    while ($pos < $len) {
        my ($num, $v);
        # The usual fields inline: a head or body under 16 KiB, end.
        my $t = vec($buf, $pos, 8);
        if ($t == $RF_END_TAG && $pos + 1 < $len && vec($buf, $pos + 1, 8) < 0x80) {
            ($num, $v) = ($RF_END, vec($buf, $pos + 1, 8));
            $pos += 2;
        }
        elsif (($t == $RF_HEAD_TAG || $t == $RF_BODY_TAG) && $pos + 2 < $len) {
            my ($b1, $b2) = (vec($buf, $pos + 1, 8), vec($buf, $pos + 2, 8));
            my ($n, $p) = $b1 < 0x80 ? ($b1, $pos + 2) : $b2 < 0x80 ? (($b1 & 0x7f) | ($b2 << 7), $pos + 3) : (-1);
            if ($n >= 0 && $p + $n <= $len) {
                ($num, $v) = ($t >> 3, substr($buf, $p, $n));
                $pos = $p + $n;
            }
        }
        ($num, $v) = _field(\$buf, \$pos) unless defined $num;
        next unless defined $v;
        if    ($num == $RF_HEAD) { $frame{head} = _decode_head($v) }
        elsif ($num == $RF_BODY) { $frame{body} = $v }    # last one wins, as protobuf
        elsif ($num == $RF_END)  { $frame{end}  = $v ? 1 : 0 }
    }
    return \%frame;
}

# One field at $$pos: (number, value), where value is the integer of a
# varint, the bytes of a length-delimited field, or undef (fixed, skipped).
sub _field {
    my ($buf, $pos) = @_;
    my $tag = _read_varint($buf, $pos);
    my ($num, $wire) = ($tag >> 3, $tag & 7);
    die "protobuf: field number 0\n" unless $num;
    if ($wire == 2) {
        my $n = _read_varint($buf, $pos);
        die "protobuf: truncated field $num\n" if $$pos + $n > length $$buf;
        my $v = substr($$buf, $$pos, $n);
        $$pos += $n;
        return ($num, $v);
    }
    return ($num, _read_varint($buf, $pos)) if $wire == 0;
    if    ($wire == 1) { $$pos += 8 }
    elsif ($wire == 5) { $$pos += 4 }
    else { die "protobuf: unsupported wire type $wire (field $num)\n" }
    die "protobuf: truncated message\n" if $$pos > length $$buf;
    return ($num, undef);
}

# Decoded Vars by their encoded bytes. Most of a request's vars are the
# same from one request to the next (REQUEST_METHOD, SERVER_*, most
# headers): a hit costs one hash lookup instead of a walk over the Var's
# fields. The [name, value] pairs are shared between requests, so nobody
# may change them (the PSGI layer only reads them). Bounded: emptied when
# it is full (REMOTE_PORT, REQUEST_URI and the like rarely repeat).
our $VAR_CACHE_MAX = 4096;
my %var_cache;

my ($ID_TAG, $SCHEME_TAG) = (($RH_ID << 3) | 2, ($RH_SCHEME << 3) | 2);

sub _decode_head {
    my $buf  = shift;
    my %head = (request_id => '', vars => [], url_scheme => '', content_length => 0);
    my $vars = $head{vars};
    my ($pos, $len) = (0, length $buf);
    while ($pos < $len) {
        # The usual case, read inline and in as few statements as can be
        # (a head is mostly Vars, and Perl pays per statement): a one-byte
        # tag of a length-delimited field whose length fits in one byte.
        # Anything else (long values, varints, unknown layouts) takes
        # _field. vec() past the end is 0, never a warning.
        my $t   = vec($buf, $pos, 8);
        my $n   = vec($buf, $pos + 1, 8);
        my $end = $pos + 2 + $n;
        if ($t == $VARS_TAG && $n < 0x80 && $end <= $len) {
            push @$vars, $var_cache{ substr($buf, $pos + 2, $n) } || _cache_var(substr($buf, $pos + 2, $n));
            $pos = $end;
            next;
        }
        if (($t & 7) == 2 && $t < 0x80 && $t >= 8 && $n < 0x80 && $end <= $len) {
            if    ($t == $ID_TAG)     { $head{request_id} = substr($buf, $pos + 2, $n) }
            elsif ($t == $SCHEME_TAG) { $head{url_scheme} = substr($buf, $pos + 2, $n) }
            $pos = $end;
            next;
        }
        my ($num, $v) = _field(\$buf, \$pos);
        next unless defined $v;
        if    ($num == $RH_VARS)   { push @$vars, $var_cache{$v} || _cache_var($v) }
        elsif ($num == $RH_ID)     { $head{request_id}     = $v }
        elsif ($num == $RH_SCHEME) { $head{url_scheme}     = $v }
        elsif ($num == $RH_LENGTH) { $head{content_length} = _int64($v) }
    }
    return \%head;
}

sub _cache_var {
    my $bytes = shift;
    my $var   = _decode_var($bytes);
    %var_cache = () if keys %var_cache >= $VAR_CACHE_MAX;
    return $var_cache{$bytes} = $var;
}

sub _decode_var {
    my $buf = shift;
    my @var = ('', '');
    my ($pos, $len) = (0, length $buf);
    while ($pos < $len) {
        my ($num, $v) = _field(\$buf, \$pos);
        next unless defined $v;
        if    ($num == $VAR_NAME)  { $var[0] = $v }
        elsif ($num == $VAR_VALUE) { $var[1] = $v }
    }
    return \@var;
}

1;
