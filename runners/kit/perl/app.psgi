# The conformance kit app for the Perl (PSGI) runner.
#
# `bridge conform --runner perl:app.psgi --chdir runners/kit/perl` calls it
# to check the runner against runners/CONTRACT.md. Its routes, its counters
# (/stats) and its print at load time are specified in runners/kit/README.md;
# keep them in step with it. Plain PSGI (Plack::Util only, for the file
# handle with a path), no framework: a failure must be the runner's, not a
# library's. The runner makes one app call at a time, so the counters need
# no lock.
use strict;
use warnings;
use File::Spec;
use Plack::Util;
use Time::HiRes ();

# Careless apps print at load time: the runner must keep this off the
# handshake pipe (it goes to the log).
print "KIT-IMPORT-PRINT\n";

my %stats;    # request id -> { calls, bodies, closes }
my ($active, $max_active) = (0, 0);
my $file_path;

sub Kit::ids { $stats{ $_[0] } //= { calls => 0, bodies => 0, closes => 0 } }

sub Kit::opened { Kit::ids(shift)->{bodies}++ }

# Counts a close; the call it answers stays active until its first close.
sub Kit::closed {
    my ($rid, $first) = @_;
    Kit::ids($rid)->{closes}++;
    $active-- if $first;
}

# A response body: a handle whose getline returns the next chunk from $next
# (a code ref; undef ends the body) and whose close is counted.
package Kit::Body {
    sub new {
        my ($class, $rid, $next) = @_;
        Kit::opened($rid);
        return bless { rid => $rid, next => $next, closed => 0 }, $class;
    }
    sub getline { $_[0]{next}->() }
    sub close {
        my $self = shift;
        Kit::closed($self->{rid}, !$self->{closed}++);
        return 1;
    }
}

# The /file body: a real file handle with a path (as Plack::Util::set_io_path
# makes), so the runner may send the file itself; its close is counted.
package Kit::File {
    our @ISA = ('Plack::Util::IOWithPath');
    sub close {
        my $fh = shift;
        Kit::closed(${*$fh}{kit_rid}, !${*$fh}{kit_closed}++);
        return CORE::close($fh);
    }
}

# Chunks from a list, one per getline.
sub list_body {
    my ($rid, @chunks) = @_;
    return Kit::Body->new($rid, sub { shift @chunks });
}

sub num {
    my ($q, $name, $default) = @_;
    my $v = $q->{$name} // '';
    return $v =~ /\A[0-9]+\z/ ? 0 + $v : $default // 0;
}

sub sleep_ms { Time::HiRes::sleep($_[0] / 1000) if $_[0] > 0 }

# The file /file serves, created once per process.
sub kit_file {
    return $file_path if defined $file_path;
    my $path = File::Spec->catfile(File::Spec->tmpdir, "bridge-kit-$$.txt");
    open my $fh, '>:raw', $path or die "cannot create $path: $!";
    print {$fh} "bridge-kit-file\n" x 20_000;
    close $fh or die "cannot write $path: $!";
    return $file_path = $path;
}
END { unlink $file_path if defined $file_path }    # not one temp file per run left behind

my $text = [ 'Content-Type' => 'text/plain' ];
my $bytes = [ 'Content-Type' => 'application/octet-stream' ];

sub route {
    my ($env, $rid) = @_;
    my $path   = $env->{PATH_INFO} // '';
    my $method = $env->{REQUEST_METHOD} // 'GET';
    my %q;
    for my $pair (split /&/, $env->{QUERY_STRING} // '') {
        my ($k, $v) = map { my $s = $_ // ''; $s =~ tr/+/ /; $s =~ s/%([0-9A-Fa-f]{2})/chr hex $1/ge; $s }
          split /=/, $pair, 2;
        $q{$k} //= $v;
    }

    if ($path eq '/hello') {
        # A plain arrayref: the runner can tell it is one chunk (C7).
        $active--;
        return [ 200, $text, ['hello'] ];
    }
    if (($path eq '/echo' || $path eq '/echo-stream') && $method eq 'POST') {
        # The runner reads the whole body before the call (psgix.input.buffered),
        # so reading lazily (/echo-stream) behaves as /echo does.
        my $size  = num(\%q, 'read', 65536) || 65536;
        my $input = $env->{'psgi.input'};
        my $read  = sub {
            my $n = $input->read(my $piece, $size);
            die "psgi.input: $!" unless defined $n;
            return $n ? $piece : undef;
        };
        return [ 200, $bytes, Kit::Body->new($rid, $read) ] if $path eq '/echo-stream';
        my @pieces;
        while (defined(my $piece = $read->())) { push @pieces, $piece }
        return [ 200, $bytes, list_body($rid, @pieces) ];
    }
    if ($path eq '/stream') {
        my ($n, $ms, $i) = (num(\%q, 'n'), num(\%q, 'ms'), 0);
        return [ 200, [ @$text, 'X-Accel-Buffering' => 'no' ], Kit::Body->new($rid, sub {
            return undef if $n && $i >= $n;
            sleep_ms($ms) if $i++;
            return "chunk-$i\n";
        }) ];
    }
    if ($path eq '/sleep') {
        sleep_ms(num(\%q, 'ms'));
        return [ 200, $text, list_body($rid, 'slept') ];
    }
    if ($path eq '/deferred') {
        my ($ms, $step) = (num(\%q, 'ms'), 0);
        return [ 200, $text, Kit::Body->new($rid, sub {
            my $s = $step++;
            return '' if $s == 0;
            return undef if $s > 1;
            sleep_ms($ms);
            return 'late';
        }) ];
    }
    if ($path eq '/error-call') {
        die "KIT-SECRET error-call\n";
    }
    if ($path eq '/error-before' || $path eq '/error-after') {
        my $name  = substr $path, 1;
        my @first = $path eq '/error-before' ? ('') : ('partial');
        return [ 200, $text, Kit::Body->new($rid, sub {
            return shift @first if @first;
            die "KIT-SECRET $name\n";
        }) ];
    }
    if ($path eq '/file') {
        my $file = kit_file();
        open my $fh, '<:raw', $file or die "cannot open $file: $!";
        seek $fh, num(\%q, 'skip'), 0 or die "cannot seek $file: $!";
        bless $fh, 'Kit::File';
        $fh->path($file);
        ${*$fh}{kit_rid} = $rid;
        Kit::opened($rid);
        return [ 200, $bytes, $fh ];
    }
    if ($path eq '/print') {
        print "KIT-STDOUT\n";
        return [ 200, $text, list_body($rid, 'printed') ];
    }
    if ($path eq '/retire') {
        $env->{'psgix.harakiri.commit'} = 1;
        return [ 200, $text, list_body($rid, 'bye') ];
    }
    if ($path eq '/stats') {
        my $s = $stats{ $q{id} // '' } // { calls => 0, bodies => 0, closes => 0 };
        my $out = sprintf '{"calls":%d,"bodies":%d,"closes":%d,"max_active":%d}',
          $s->{calls}, $s->{bodies}, $s->{closes}, $max_active;
        $max_active = 0 if ($q{reset} // '') eq '1';
        return [ 200, [ 'Content-Type' => 'application/json' ], list_body($rid, $out) ];
    }
    return [ 404, $text, list_body($rid, 'not found') ];
}

my $app = sub {
    my $env = shift;
    my $rid = $env->{'bridge.request_id'} // '';
    Kit::ids($rid)->{calls}++;
    $active++;
    $max_active = $active if $active > $max_active;
    my $res = eval { route($env, $rid) };
    if (!$res) {
        my $err = $@;
        $active--;    # a call that dies is active until it dies
        die $err;
    }
    return $res;
};

$app;
