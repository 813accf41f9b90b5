package Bridge::Runner::Log;
# JSON log lines on stderr, and the handles that turn the app's STDOUT,
# STDERR, psgi.errors and psgix.logger output into such lines.
#
# bridge reads the shim's stderr line by line and re-logs every JSON object
# it finds there (runners/CONTRACT.md, "Logs"; docs/conformance.md G8). Everything
# the app prints goes through here, so nothing it writes can reach the
# handshake pipe or break a JSON line in half.
use strict;
use warnings;

use POSIX ();
use Scalar::Util ();
use Symbol ();
use Time::HiRes ();

our $VERSION = '0.1';

# The id of the request being served; Bridge::Runner::PSGI local-ises it, so
# every line written while the app runs carries it (G19).
our $REQUEST_ID;

my %LEVELS = (debug => 10, info => 20, warn => 30, error => 40, fatal => 50);

my $threshold = $LEVELS{ lc($ENV{BRIDGE_LOG_LEVEL} // '') } // $LEVELS{info};
my $max_line  = do {
    my $n = $ENV{BRIDGE_LOG_MAX_LINE} // '';
    $n =~ /^\d+$/ ? ($n < 256 ? 256 : $n) : 16384;
};

my $json = eval { require Cpanel::JSON::XS; Cpanel::JSON::XS->new->utf8->canonical->allow_blessed->allow_unknown }
  || do { require JSON::PP; JSON::PP->new->utf8->canonical->allow_blessed->allow_unknown };

# The log's own copy of fd 2, taken before the app can touch STDERR.
my $out;
# Streams that hold a partial line, for end_request to flush. A stream is
# put here (weakly) when a partial line starts, so that a request whose app
# printed nothing, the usual case, costs end_request nothing.
our @streams;

sub init {
    return if $out;
    open($out, '>&', \*STDERR) or open($out, '>&=', 2) or die "cannot dup stderr: $!";
    binmode $out;
    $out->autoflush(1);
}

# Sends the log to another handle (tests).
sub output {
    my $fh = shift;
    init();
    my $old = $out;
    $out = $fh;
    return $old;
}

sub enabled { ($LEVELS{ $_[0] } // 40) >= $threshold }

sub max_line { $max_line }

# Text for JSON: character strings as they are, byte strings decoded as
# UTF-8 when they are valid UTF-8, else as Latin-1 (a log line never fails).
sub text {
    my $s = shift;
    return $s if !defined $s || ref $s || utf8::is_utf8($s) || $s !~ /[\x80-\xff]/;
    my $copy = $s;
    return utf8::decode($copy) ? $copy : $s;
}

=head2 log($level, $message, %fields)

Writes one JSON line. Fields with an undef value are left out; the current
request id is added unless the fields have one.

=cut

sub log {
    my ($level, $message, %fields) = @_;
    return if ($LEVELS{$level} // 40) < $threshold;
    init() unless $out;
    $message = text($message // '');
    if (length $message > $max_line) {
        $message = substr($message, 0, $max_line);
        $fields{truncated} = \1;
    }
    $fields{request_id} //= $REQUEST_ID if defined $REQUEST_ID;
    my %rec = (level => $level, message => $message, runner => 'psgi', pid => $$, ts => _ts());
    while (my ($k, $v) = each %fields) {
        $rec{$k} = ref $v ? $v : text($v) if defined $v;
    }
    my $line = eval { $json->encode(\%rec) }
      // $json->encode({ level => $level, message => "$message", runner => 'psgi', pid => $$ });
    # One syswrite per line: lines from a forked child cannot interleave
    # below PIPE_BUF, and a partial write is finished before anything else.
    $line .= "\n";
    while (length $line) {
        my $n = syswrite($out, $line);
        if (!defined $n) {
            next if $!{EINTR} || $!{EAGAIN};
            return;    # stderr is gone: nobody is listening any more
        }
        substr($line, 0, $n, '');
    }
}

sub _ts {
    my $t = Time::HiRes::time();
    return POSIX::strftime('%Y-%m-%dT%H:%M:%S', gmtime $t) . sprintf('.%03dZ', ($t - int $t) * 1000);
}

# Flush partial lines of STDOUT/STDERR and psgi.errors at the end of a request.
sub end_request {
    return unless @streams;
    my @pending = grep { defined } @streams;
    @streams = ();
    for my $stream (@pending) {
        $stream->{listed} = 0;
        $stream->flush_pending;
    }
}

sub _register {
    return if $_[0]{listed};
    $_[0]{listed} = 1;
    push @streams, $_[0];
    Scalar::Util::weaken($streams[-1]);
}

# psgix.logger (X5): a coderef taking { level => ..., message => ... }.
# Unknown levels are logged as error.
sub psgix_logger {
    my $rid = shift;
    return sub {
        my $arg   = shift;
        my $level = ref $arg eq 'HASH' ? lc($arg->{level} // '') : '';
        $level = 'error' unless exists $LEVELS{$level};
        my $message = ref $arg eq 'HASH' ? $arg->{message} : $arg;
        $message = '' unless defined $message;
        chomp(my $m = "$message");
        Bridge::Runner::Log::log($level, $m, stream => 'logger', request_id => $rid);
        return 1;
    };
}

# A fresh psgi.errors handle for one request (P10, G18): a glob tied to a
# Stream, so both $fh->print(...) and print {$fh} ... work.
sub errors_handle {
    my $rid = shift;
    my $fh = Symbol::gensym();
    tie *$fh, 'Bridge::Runner::Log::Stream', 'errors', 'info', $rid;
    return bless $fh, 'Bridge::Runner::Log::Handle';
}

# Point STDOUT and STDERR at the log (G7). fd 1 becomes a copy of fd 2, so
# output that bypasses Perl (system(), XS) lands on stderr as plain lines;
# Perl-level prints become JSON lines with stream "stdout"/"stderr".
sub capture_stdio {
    init();
    open(STDOUT, '>&', \*STDERR) or die "cannot point stdout at stderr: $!";
    tie *STDOUT, 'Bridge::Runner::Log::Stream', 'stdout', 'info';
    tie *STDERR, 'Bridge::Runner::Log::Stream', 'stderr', 'warn';
}

package Bridge::Runner::Log::Stream;
# A tied handle that logs each line written to it.
use Scalar::Util ();

sub TIEHANDLE {
    my ($class, $stream, $level, $rid) = @_;
    return bless { stream => $stream, level => $level, rid => $rid, pending => '' }, $class;
}

sub _add {
    my ($self, $data) = @_;
    return 1 unless defined $data && length $data;
    my $buf = $self->{pending} . $data;
    my $nl  = rindex($buf, "\n");
    if ($nl < 0) {
        # An over-long partial line is cut and logged now (G8).
        my $max = Bridge::Runner::Log::max_line();
        $self->_emit(substr($buf, 0, $max, ''), 1) while length $buf > $max;
        $self->{pending} = $buf;
        Bridge::Runner::Log::_register($self) if length $buf;
        return 1;
    }
    $self->{pending} = substr($buf, $nl + 1);
    Bridge::Runner::Log::_register($self) if length $self->{pending};
    $self->_emit($_) for split /\n/, substr($buf, 0, $nl);
    return 1;
}

sub _emit {
    my ($self, $line, $cut) = @_;
    $line =~ s/\r\z//;
    return unless length $line;
    Bridge::Runner::Log::log(
        $self->{level}, $line,
        stream     => $self->{stream},
        request_id => $self->{rid},
        ($cut ? (truncated => \1) : ()),
    );
}

sub flush_pending {
    my $self = shift;
    my $line = $self->{pending};
    $self->{pending} = '';
    $self->_emit($line) if length $line;
}

sub PRINT {
    my $self = shift;
    my $data = join(defined $, ? $, : '', map { defined $_ ? $_ : '' } @_);
    $data .= $\ if defined $\;
    return $self->_add($data);
}

sub PRINTF {
    my $self = shift;
    my $fmt  = shift;
    return $self->_add(sprintf($fmt, @_));
}

sub WRITE {
    my ($self, $buf, $len, $off) = @_;
    $len //= length $buf;
    $self->_add(substr($buf, $off // 0, $len));
    return $len;
}

sub FILENO   { $_[0]{stream} eq 'stdout' ? 1 : 2 }
sub BINMODE  { 1 }
sub CLOSE    { $_[0]->flush_pending; 1 }
sub EOF      { 1 }
sub READLINE { undef }
sub GETC     { undef }
sub READ     { 0 }
sub SEEK     { 0 }
sub TELL     { -1 }

sub OPEN {
    my $self = shift;
    Bridge::Runner::Log::log('warn', "the app tried to reopen $self->{stream}; it stays the log",
        stream => $self->{stream});
    $! = POSIX::EPERM();
    return 0;
}

sub UNTIE   { $_[0]->flush_pending }
sub DESTROY { $_[0]->flush_pending if length $_[0]{pending} }

package Bridge::Runner::Log::Handle;
# psgi.errors as an object: IO::Handle's methods (print, printf, say,
# close...) reach the tied Stream; flush logs a pending partial line (G8),
# which IO::Handle's own flush cannot do for a tied handle.
use IO::Handle ();
our @ISA = ('IO::Handle');

sub flush {
    my $stream = tied *{ $_[0] };
    $stream->flush_pending if $stream;
    return 1;
}

1;
