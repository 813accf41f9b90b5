package TestPSGI;
# Runs one request through Bridge::Runner::PSGI with a FakeSlot.
use strict;
use warnings;
BEGIN { $ENV{BRIDGE_LOG_LEVEL} //= "fatal" }    # quiet unless a test captures
use Exporter 'import';
our @EXPORT = qw(run_request capture_logs);
use Bridge::Runner::PSGI;
use Bridge::Runner::Log;
use FakeSlot qw(request_frames response_of);

# run_request($app, %request, _slot => {FakeSlot options}, _psgi => {PSGI options})
# Returns (response summary, handle() result, slot, frames).
sub run_request {
    my ($app, %r) = @_;
    my $slot_opt = delete $r{_slot} || {};
    my $psgi     = Bridge::Runner::PSGI->new(app => $app, %{ delete $r{_psgi} || {} });
    my @frames   = $r{_frames} ? @{ delete $r{_frames} } : request_frames(%r);
    my $slot     = FakeSlot->new(%$slot_opt, frames => [ @frames[ 1 .. $#frames ] ]);
    my $result   = $psgi->handle($slot, $frames[0]);
    my $res      = response_of($slot->sent);
    return wantarray ? ($res, $result, $slot) : $res;
}

# Runs $code with the log going to a string; returns (list of records, $code's result).
sub capture_logs {
    my $code = shift;
    my $buf  = '';
    no warnings 'redefine';
    require JSON::PP;
    my $orig = \&Bridge::Runner::Log::log;
    my @records;
    local *Bridge::Runner::Log::log = sub {
        my ($level, $message, %fields) = @_;
        $fields{request_id} //= $Bridge::Runner::Log::REQUEST_ID if defined $Bridge::Runner::Log::REQUEST_ID;
        push @records, { level => $level, message => $message, %fields };
    };
    my @ret = $code->();
    Bridge::Runner::Log::end_request();
    return (\@records, @ret);
}

1;
