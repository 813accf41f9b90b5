# Env-dump PSGI app: answers with the request's env as JSON.
#
# The same file runs under bridge (--runner perl:app.psgi) and under uWSGI
# (--plugin psgi --psgi app.psgi); e2e/uwsgi_environ_test.go compares the
# two dumps. Every value is written as a string, in the same notation as
# app.py and config.ru:
#
# - a plain scalar is written byte by byte: bytes 0x20-0x7e except
#   backslash as they are, everything else as \xHH (a character above 0xFF,
#   which a PSGI env must not hold, as \u{HHHH});
# - a boolean (Perl 5.36 builtin::is_bool: !!0, !!1) as <bool true|false>;
#   a number that has no string form yet as <number N>;
# - a reference as a type description: <array [1,1]>, <hash>, <code>,
#   <glob>, <object CLASS>; undef as <undef>.
#
# When ENVDUMP_DIR is set and the request has an X-Envdump-Token header, the
# dump is also written to ENVDUMP_DIR/TOKEN.json (HEAD bodies are dropped).
use strict;
use warnings;
use B ();
use JSON::PP ();
use Scalar::Util qw(blessed reftype);

sub escape_bytes {
    my ($s) = @_;
    my $out = '';
    for my $c (split //, $s) {
        my $o = ord $c;
        if    ($o > 0xFF)                           { $out .= sprintf '\\u{%04x}', $o }
        elsif ($o >= 0x20 && $o < 0x7F && $o != 0x5C) { $out .= $c }
        else                                        { $out .= sprintf '\\x%02x', $o }
    }
    return $out;
}

sub is_bool {
    my ($v) = @_;
    return 0 unless defined &builtin::is_bool;
    no warnings;
    return builtin::is_bool($v);
}

sub describe {
    my ($v) = @_;
    return '<undef>' unless defined $v;
    if (!ref $v) {
        return '<bool ' . ($v ? 'true' : 'false') . '>' if is_bool($v);
        my $flags = B::svref_2object(\$v)->FLAGS;
        if (!($flags & B::SVf_POK) && ($flags & (B::SVf_IOK | B::SVf_NOK))) {
            return "<number $v>";
        }
        return escape_bytes($v);
    }
    if (my $class = blessed $v) {
        return "<object $class>";
    }
    my $type = reftype $v;
    return '<array [' . join(',', map { describe($_) } @$v) . ']>' if $type eq 'ARRAY';
    return '<hash>' if $type eq 'HASH';
    return '<code>' if $type eq 'CODE';
    return '<glob>' if $type eq 'GLOB';
    return '<ref ' . lc($type) . '>';
}

my $app = sub {
    my ($env) = @_;
    my $n = 0;
    if (my $in = $env->{'psgi.input'}) {
        while (1) {
            my $got = $in->read(my $buf, 65536);
            last unless $got;
            $n += $got;
        }
    }
    my %dump = map { $_ => describe($env->{$_}) } keys %$env;
    $dump{'envdump.body_length'} = "$n";
    my $out = JSON::PP->new->ascii->canonical->indent->encode(\%dump);
    my $token = $env->{HTTP_X_ENVDUMP_TOKEN} // '';
    if (my $dir = $ENV{ENVDUMP_DIR}) {
        if ($token =~ /\A[A-Za-z0-9_.-]{1,64}\z/) {
            open my $fh, '>:raw', "$dir/$token.json" or die "envdump: $dir/$token.json: $!";
            print {$fh} $out;
            close $fh or die "envdump: $!";
        }
    }
    return [200, ['Content-Type' => 'application/json', 'Content-Length' => length $out], [$out]];
};

$app;
