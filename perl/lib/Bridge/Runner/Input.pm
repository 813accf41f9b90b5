package Bridge::Runner::Input;
# psgi.input: the whole request body, buffered before the app runs
# (psgix.input.buffered, X1), in memory up to a limit and in an unlinked
# temporary file past it. The app gets a real Perl filehandle at offset 0,
# so read($buf, $len, $offset), seek, tell, getline, <$fh> and eof all work
# and never block (P9), as with Starman's Stream::Buffered input.
use strict;
use warnings;

use File::Temp ();

# In memory up to this many bytes (the brief: 1 MiB), then a temp file.
our $MEMORY_MAX = 1 << 20;

sub new {
    my ($class, %opt) = @_;
    return bless {
        buf   => '',
        fh    => undef,                       # the temp file once spilled
        size  => 0,
        limit => $opt{limit},                 # RequestHead.content_length, or undef
        max   => $opt{memory_max} // $MEMORY_MAX,
        dir   => $opt{dir},
    }, $class;
}

sub size { $_[0]{size} }

# Adds a piece of body; bytes past the declared length are dropped (the
# app never sees more than CONTENT_LENGTH, P9). Returns the bytes kept.
sub add {
    my ($self, $data) = @_;
    return 0 unless defined $data && length $data;
    if (defined $self->{limit}) {
        my $room = $self->{limit} - $self->{size};
        return 0 if $room <= 0;
        $data = substr($data, 0, $room) if length $data > $room;
    }
    $self->{size} += length $data;
    if ($self->{fh}) {
        _write_all($self->{fh}, $data);
    }
    elsif ($self->{size} > $self->{max}) {
        my $fh = File::Temp->new(UNLINK => 1, $self->{dir} ? (DIR => $self->{dir}) : (TMPDIR => 1));
        binmode $fh;
        unlink $fh->filename;    # gone with the handle, whatever happens
        _write_all($fh, $self->{buf});
        _write_all($fh, $data);
        $self->{buf} = '';
        $self->{fh}  = $fh;
    }
    else {
        $self->{buf} .= $data;
    }
    return length $data;
}

sub _write_all {
    my ($fh, $data) = @_;
    my $off = 0;
    while ($off < length $data) {
        my $n = syswrite($fh, $data, length($data) - $off, $off);
        die "cannot buffer the request body: $!\n" unless defined $n;
        $off += $n;
    }
}

# psgi.input of a request without a body: the same kind of handle as
# handle() gives, without an Input object (most requests).
sub empty_handle {
    my $buf = '';
    open(my $fh, '<:raw', \$buf) or die "cannot open the in-memory request body: $!\n";
    return $fh;
}

# The handle for psgi.input, positioned at 0.
sub handle {
    my $self = shift;
    if (my $fh = $self->{fh}) {
        sysseek($fh, 0, 0);
        seek($fh, 0, 0);
        return $fh;
    }
    my $buf = delete $self->{buf};
    open(my $fh, '<:raw', \$buf) or die "cannot open the in-memory request body: $!\n";
    return $fh;
}

1;
