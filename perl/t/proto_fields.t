# %Bridge::Runner::Proto::FIELDS against proto/bridge/v1/runner.proto, so the
# hand-written codec has one source of truth for field numbers.
use strict;
use warnings;
use Test::More;
use FindBin;
use Bridge::Runner::Proto;

my $proto = "$FindBin::Bin/../../proto/bridge/v1/runner.proto";
plan skip_all => "runner.proto not found at $proto (shim extracted outside the repo)" unless -f $proto;

open my $fh, '<', $proto or die "$proto: $!";
my $src = do { local $/; <$fh> };
$src =~ s{//[^\n]*}{}g;

my %proto;
while ($src =~ /message\s+(\w+)\s*\{([^}]*)\}/g) {
    my ($msg, $body) = ($1, $2);
    $proto{$msg} = {};
    while ($body =~ /(?:repeated\s+)?(\w+)\s+(\w+)\s*=\s*(\d+)\s*;/g) {
        $proto{$msg}{$2} = [ $3 + 0, $1 ];
    }
}

my $fields = \%Bridge::Runner::Proto::FIELDS;
for my $msg (sort keys %$fields) {
    ok exists $proto{$msg}, "message $msg exists in runner.proto";
    is_deeply $fields->{$msg}, $proto{$msg}, "$msg: field names, numbers and types match runner.proto";
}
# Every message with fields that the shim exchanges is covered.
for my $msg (sort keys %proto) {
    next if $msg eq 'DescribeRequest';
    ok exists $fields->{$msg}, "runner.proto message $msg is known to the codec";
}
done_testing;
