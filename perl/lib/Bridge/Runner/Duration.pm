package Bridge::Runner::Duration;
# Go's duration format, as bridge writes BRIDGE_GRACE (time.Duration.String:
# "30s", "1m30s", "500ms"). The same algorithm as Go's time.ParseDuration,
# so that the shims and bridge agree on every value; the shared cases are in
# testdata/durations.txt. Units are matched as bytes: "\xc2\xb5s" and
# "\xce\xbcs" are U+00B5 and U+03BC in UTF-8, as the environment holds them.
use strict;
use warnings;

use constant MAX => 9223372036854775807;    # Go's time.Duration range
my %UNIT = (ns => 1, us => 1_000, "\xc2\xb5s" => 1_000, "\xce\xbcs" => 1_000, ms => 1_000_000,
    s => 1_000_000_000, m => 60_000_000_000, h => 3_600_000_000_000);

=head2 parse($text)

Nanoseconds in $text, an integer; dies with a message if $text is not a Go
duration.

=cut

sub parse {
    my ($s) = @_;
    my $orig = $s;
    my $bad  = sub { die "invalid duration '$orig'" . ($_[0] // '') . "\n" };
    my $neg  = 0;
    $neg = $1 eq '-' if $s =~ s/\A([-+])//;
    return 0 if $s eq '0';
    $bad->() if $s eq '';
    my $total = 0;
    while (length $s) {
        $s =~ s/\A([0-9]*)(\.([0-9]*))?//;
        my ($whole, $frac) = ($1, $3 // '');
        $bad->() if $whole eq '' && $frac eq '';
        $s =~ s/\A([^0-9.]*)//;
        my $unit = $UNIT{$1} or $bad->(': missing or unknown unit');
        (my $digits = $whole) =~ s/\A0+//;
        my $per_unit = do { use integer; MAX / $unit };
        $bad->(': out of range') if length($digits) > 19 || ($digits || 0) > $per_unit;
        my $v = ($digits || 0) * $unit;
        # Go keeps fraction digits while they fit in 63 bits and scales in
        # floating point, truncating.
        my ($f, $scale) = (0, 1.0);
        for my $d (split //, $frac) {
            last if $f > do { use integer; MAX / 10 };
            ($f, $scale) = ($f * 10 + $d, $scale * 10);
        }
        $v += int($f * ($unit / $scale)) if $f;
        $total += $v;
        $bad->(': out of range') if $v > MAX || $total > MAX;
    }
    return $neg ? -$total : $total;
}

1;
