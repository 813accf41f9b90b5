package Bridge::Runner::Headers;
# Checks on the status and headers a PSGI app returns (docs/conformance.md P12, P13,
# G9-G14), and the reason-phrase table.
#
# Everything is checked before it leaves the shim: Go trusts ResponseHead
# (runner.proto: "already validated by the shim") and would otherwise have
# to choose between forwarding an injected header and silently repairing it.
use strict;
use warnings;

use Exporter 'import';
our @EXPORT_OK = qw(check_status check_headers reason_phrase);

# IANA HTTP Status Code Registry names (RFC 9110 and later), G9. Codes the
# registry leaves unassigned (418 is "(Unused)") get an empty reason.
my %REASON = (
    200 => 'OK', 201 => 'Created', 202 => 'Accepted',
    203 => 'Non-Authoritative Information', 204 => 'No Content',
    205 => 'Reset Content', 206 => 'Partial Content', 207 => 'Multi-Status',
    208 => 'Already Reported', 226 => 'IM Used',
    300 => 'Multiple Choices', 301 => 'Moved Permanently', 302 => 'Found',
    303 => 'See Other', 304 => 'Not Modified', 305 => 'Use Proxy',
    307 => 'Temporary Redirect', 308 => 'Permanent Redirect',
    400 => 'Bad Request', 401 => 'Unauthorized', 402 => 'Payment Required',
    403 => 'Forbidden', 404 => 'Not Found', 405 => 'Method Not Allowed',
    406 => 'Not Acceptable', 407 => 'Proxy Authentication Required',
    408 => 'Request Timeout', 409 => 'Conflict', 410 => 'Gone',
    411 => 'Length Required', 412 => 'Precondition Failed',
    413 => 'Content Too Large', 414 => 'URI Too Long',
    415 => 'Unsupported Media Type', 416 => 'Range Not Satisfiable',
    417 => 'Expectation Failed', 421 => 'Misdirected Request',
    422 => 'Unprocessable Content', 423 => 'Locked', 424 => 'Failed Dependency',
    425 => 'Too Early', 426 => 'Upgrade Required', 428 => 'Precondition Required',
    429 => 'Too Many Requests', 431 => 'Request Header Fields Too Large',
    451 => 'Unavailable For Legal Reasons',
    500 => 'Internal Server Error', 501 => 'Not Implemented', 502 => 'Bad Gateway',
    503 => 'Service Unavailable', 504 => 'Gateway Timeout',
    505 => 'HTTP Version Not Supported', 506 => 'Variant Also Negotiates',
    507 => 'Insufficient Storage', 508 => 'Loop Detected',
    510 => 'Not Extended', 511 => 'Network Authentication Required',
);

sub reason_phrase { $REASON{ $_[0] } // '' }

# Response headers a PSGI app may not send: stripped with a warning (H13,
# G12), not an error, because PSGI servers traditionally drop them.
my %HOP_BY_HOP = map { $_ => 1 }
  qw(connection keep-alive proxy-connection transfer-encoding te trailer upgrade);

# Headers that must not go out with a 204 or 304 (G14, PS24).
my %NO_BODY_STRIP = map { $_ => 1 } qw(content-length content-type transfer-encoding);

=head2 check_status($status)

Returns the status as a number or dies with a message. P12: an integer;
G10: three digits, a final status (200..999).

=cut

sub check_status {
    my $status = shift;
    die "invalid status: undef\n" unless defined $status;
    die "invalid status '$status': want a 3-digit integer\n"
      if ref $status || $status !~ /\A[0-9]{3}\z/;
    die "invalid status $status: a final status must be 200..999 (apps cannot send 1xx)\n"
      if $status < 200;
    return $status + 0;
}

=head2 check_headers($headers, $status)

Returns ([[name, value], ...], $content_length, \@warnings). Names and values
come back as byte strings in the app's order; hop-by-hop headers are left
out (with a warning), and for 204/304 so are Content-Length, Content-Type
and Transfer-Encoding. $content_length is undef when the app sent none.
Dies with a message on an invalid header.

=cut

# Headers that passed the checks as they are (not Content-Length, not
# hop-by-hop), by "name\0value": an app sends the same few on every
# response. Neither part of a valid header holds a NUL, so keys cannot
# collide. Value: [the [name, value] pair as bytes (shared, read-only),
# dropped for 204/304]. Emptied when full.
our $CACHE_MAX = 1024;
my %passed;

sub check_headers {
    my ($headers, $status) = @_;
    die "response headers must be an array reference\n" unless ref $headers eq 'ARRAY';
    die "response headers must have an even number of elements, not " . scalar(@$headers) . "\n"
      if @$headers % 2;
    my $no_body = $status == 204 || $status == 304;
    my (@pairs, @warnings, $length);
    for (my $i = 0; $i < @$headers; $i += 2) {
        my ($name, $value) = @$headers[ $i, $i + 1 ];
        my $key;
        if (defined $name && defined $value && !ref $name && !ref $value) {
            $key = "$name\0$value";
            if (my $seen = $passed{$key}) {
                push @pairs, $seen->[0] unless $no_body && $seen->[1];
                next;
            }
        }
        die "response header name is undef\n" unless defined $name;
        # P13 (Lint's rule) is stricter than an RFC 9110 token (G11).
        die "invalid response header name '" . _show($name) . "'\n"
          if ref $name || $name !~ /\A[A-Za-z][0-9A-Za-z_-]*\z/ || $name =~ /[-_]\z/;
        my $lc = lc $name;
        die "a 'Status' response header is not allowed\n" if $lc eq 'status';
        die "response header '$name' has an undefined value\n" unless defined $value;
        $value = "$value" if ref $value;    # an object with string overloading
        unless (utf8::downgrade($value, 1)) {
            die "response header '$name' has a wide character (above U+00FF) in its value\n";
        }
        # P13: nothing in \000-\037 (HTAB included, as Lint); G11: no DEL.
        die "invalid character in the value of response header '$name': " . _show($value) . "\n"
          if $value =~ /[\x00-\x1f\x7f]/;
        if ($HOP_BY_HOP{$lc}) {
            push @warnings, "hop-by-hop response header '$name' removed";
            next;
        }
        if ($lc eq 'content-length') {
            die "invalid Content-Length '" . _show($value) . "'\n" unless $value =~ /\A[0-9]+\z/;
            my $n = $value + 0;
            die "invalid Content-Length '$value': too large\n" if length($value) > 18;
            if (defined $length) {
                die "conflicting Content-Length values $length and $n\n" if $n != $length;
                next;    # the same value twice: one line is enough
            }
            $length = $n;
        }
        my $pair = [ $name, $value ];
        if (defined $key && $lc ne 'content-length') {
            %passed = () if keys %passed >= $CACHE_MAX;
            $passed{$key} = [ $pair, $NO_BODY_STRIP{$lc} ];
        }
        next if $no_body && $NO_BODY_STRIP{$lc};
        push @pairs, $pair;
    }
    $length = undef if $no_body;
    return (\@pairs, $length, \@warnings);
}

# A value for an error message: control characters made visible, cut short.
sub _show {
    my $s = shift;
    $s = substr($s, 0, 80) . '...' if length $s > 80;
    $s =~ s/([\x00-\x1f\x7f])/sprintf('\\x%02x', ord $1)/ge;
    $s =~ s/([^\x00-\xff])/sprintf('\\x{%x}', ord $1)/ge;
    return $s;
}

1;
