# BRIDGE_GRACE's format: every case of testdata/durations.txt, which a Go
# test checks against time.ParseDuration and the other shims read too.
use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Bridge::Runner::Duration;

my $table = "$FindBin::Bin/../../testdata/durations.txt";
open my $fh, '<:raw', $table or die "$table: $!";
while (my $line = <$fh>) {
    chomp $line;
    next if $line eq '' || $line =~ /^#/;
    my ($text, $want) = split /\t/, $line, -1;
    my $got = eval { Bridge::Runner::Duration::parse($text) };
    if ($want eq 'error') {
        ok !defined $got, "line $.: '$text' is an error" or diag "got $got";
    } else {
        is $got, $want, "line $.: '$text' is $want ns" or diag $@;
    }
}
done_testing;
