package Bridge::Runner::PSGI;
# The PSGI side of a slot: RequestFrames in, $env, the app call, and the
# response forms of PSGI 1.1 out (docs/conformance.md P1-P25, X1-X6).
#
# Modelled on Plack::Handler::CGI (response forms) and Starman's Server.pm
# (env, writer object, cleanup handlers, harakiri). Nothing here knows about
# gRPC: a slot is any object with next_frame() (a decoded RequestFrame, or
# undef when the stream is gone) and send(\%frame) (false when it is gone),
# so tests drive it with plain lists.
use strict;
use warnings;

use Scalar::Util ();
use Bridge::Runner::Input;
use Bridge::Runner::Log;
use Bridge::Runner::Response;

sub new {
    my ($class, %a) = @_;
    my $workers = $a{workers} // 1;
    return bless {
        app => $a{app},
        # The constant part of every env; copied per request (P8, X1-X4).
        base => {
            'psgi.multithread'     => !!0,    # one app call at a time (G17)
            'psgi.multiprocess'    => !!($workers > 1),
            'psgi.run_once'        => !!0,
            'psgi.nonblocking'     => !!0,    # no event loop for the app
            'psgi.streaming'       => !!1,
            'psgix.input.buffered' => !!1,
            'psgix.cleanup'        => !!1,
            'psgix.harakiri'       => !!1,    # bridge restarts a worker that exits
        },
        input_dir => $a{input_dir},
    }, $class;
}

=head2 handle($slot, $first_frame)

Serves one request whose head is in $first_frame. Returns a hashref:
C<next> (a head frame that arrived before this request's end: the next
request), C<gone> (the stream was cancelled), C<harakiri> (the app asked
the worker to exit), C<response> (a Response whose body is to be closed
once Go has taken its File frame, see keep_open).

=cut

sub handle {
    my ($self, $slot, $first) = @_;
    my $head = $first->{head};
    my $rid  = $head->{request_id} // '';
    local $Bridge::Runner::Log::REQUEST_ID = length $rid ? $rid : undef;
    my %result;

    # psgix.input.buffered: the whole body before the app runs (X1).
    my $ended = $first->{end};
    my ($input, $input_error);
    if ($ended && !length $first->{body}) {
        $input = Bridge::Runner::Input::empty_handle();
    }
    else {
        $input = $self->_read_body($slot, $first, \%result, \$input_error) or return { gone => 1 };
    }
    if (defined $input_error) {
        chomp $input_error;
        $slot->send({ error => { kind => 'input', message => "cannot buffer the request body: $input_error" }, end => 1 });
        Bridge::Runner::Log::end_request();
        return \%result;
    }

    my $env  = $self->env($head, $input);
    my $resp = Bridge::Runner::Response->new(slot => $slot, env => $env, is_head => $env->{REQUEST_METHOD} eq 'HEAD');
    $self->run_app($env, $resp);

    if ($resp->{gone}) {
        # G4: a client that went away is not an app error.
        Bridge::Runner::Log::log(info => 'request cancelled');
        $result{gone} = 1;
    }
    if ($resp->{keep_open} && !$resp->{gone}) {
        $result{response} = $resp;
    }
    elsif ($resp->{body}) {
        $resp->close_body;
    }
    _cleanup($env) if ref $env->{'psgix.cleanup.handlers'} eq 'ARRAY' && @{ $env->{'psgix.cleanup.handlers'} };
    $result{harakiri} = 1 if $env->{'psgix.harakiri.commit'};
    Bridge::Runner::Log::end_request();
    return \%result;
}

# The request body from $first and the frames after it, buffered; returns
# psgi.input's handle, or undef when the stream went away meanwhile. A head
# that comes before the end goes to $result->{next}; a failure to buffer to
# $$error.
sub _read_body {
    my ($self, $slot, $first, $result, $error) = @_;
    my $head  = $first->{head};
    my $cl    = $head->{content_length} // -1;
    my $input = Bridge::Runner::Input->new(limit => $cl >= 0 ? $cl : undef, dir => $self->{input_dir});
    my $add = sub {
        return if defined $$error;
        # A full disk must not take the runner down: the request fails,
        # the rest of its body is still read (the slot stays in step).
        eval { $input->add(shift); 1 } or $$error = Bridge::Runner::Log::text("$@");
    };
    $add->($first->{body});
    my $ended = $first->{end};
    while (!$ended) {
        my $f = $slot->next_frame;
        if (!$f) {
            Bridge::Runner::Log::log(info => 'request cancelled while its body was arriving');
            return undef;
        }
        if ($f->{head}) {
            # Go broke the protocol, but the head still belongs to the next request.
            Bridge::Runner::Log::log(warn => 'a request head arrived before the previous request body ended');
            $result->{next} = $f;
            last;
        }
        $add->($f->{body});
        $ended = $f->{end};
    }
    return defined $$error ? 1 : $input->handle;
}

# A fresh env per request (P1, G18): the request's CGI variables as bytes
# (P2), then the psgi.* keys (P8) and bridge.request_id (G19). $input is
# the psgi.input handle.
sub env {
    my ($self, $head, $input) = @_;
    my %env = %{ $self->{base} };
    $env{ $_->[0] } = $_->[1] for @{ $head->{vars} };
    # Go always sends these (runner.proto); the defaults keep Lint quiet if not.
    $env{REQUEST_METHOD} = 'GET' unless defined $env{REQUEST_METHOD} && length $env{REQUEST_METHOD};
    $env{SCRIPT_NAME}  //= '';
    $env{PATH_INFO}    //= '';
    $env{QUERY_STRING} //= '';
    delete @env{qw(HTTP_CONTENT_TYPE HTTP_CONTENT_LENGTH)};
    my $rid = $head->{request_id} // '';
    $env{'psgi.version'}           = [ 1, 1 ];
    $env{'psgi.url_scheme'}        = ($head->{url_scheme} // '') eq 'https' ? 'https' : 'http';
    $env{'psgi.input'}             = $input;
    $env{'psgi.errors'}            = Bridge::Runner::Log::errors_handle($rid);
    $env{'psgix.logger'}           = Bridge::Runner::Log::psgix_logger($rid);
    $env{'psgix.cleanup.handlers'} = [];
    $env{'bridge.request_id'}      = $rid;
    return \%env;
}

# Calls the app and sends its response; every failure becomes an Error
# frame or, when the stream is gone, a log line.
sub run_app {
    my ($self, $env, $resp) = @_;
    my $ok = eval {
        my $res = $self->{app}->($env);
        if (ref $res eq 'ARRAY') {
            _respond($resp, $res);
        }
        elsif (ref $res eq 'CODE') {
            _delayed($resp, $res);
        }
        else {
            Bridge::Runner::Response::error(protocol => 'the application returned '
                  . (defined $res ? (ref $res ? 'a ' . ref($res) . ' reference' : "'$res'") : 'undef')
                  . ' instead of an array reference or a code reference (P11)');
        }
        1;
    };
    return if $ok;
    my $err = $@;
    if ($resp->gone || (Scalar::Util::blessed($err) && $err->isa('Bridge::Runner::Disconnected'))) {
        $resp->{gone} = 1;
        return;
    }
    if ($resp->ended) {
        # The response is complete; the app died after it (e.g. in the
        # writer's caller after close): nothing to tell Go.
        my ($kind, $message, $trace) = Bridge::Runner::Error::describe($err);
        Bridge::Runner::Log::log(error => "app error after the response ended: $message", traceback => $trace);
        return;
    }
    $resp->fail($err);
}

# [status, headers, body] (P11-P16).
sub _respond {
    my ($resp, $res) = @_;
    Bridge::Runner::Response::error(protocol => 'the response must have 3 elements, not ' . scalar(@$res) . ' (P11)')
      unless @$res == 3;
    $resp->set_head($res->[0], $res->[1]);
    my $body = $res->[2];
    if (ref $body eq 'ARRAY') {
        $resp->send_array($body);
    }
    elsif (defined $body && (ref $body || ref \$body eq 'GLOB')) {
        $resp->send_handle($body);
    }
    else {
        Bridge::Runner::Response::error(protocol => 'the response body must be an array reference or a handle, not '
              . (defined $body ? "'$body'" : 'undef'));
    }
}

# A delayed response (P17-P19): the app calls the responder exactly once.
sub _delayed {
    my ($resp, $code) = @_;
    my ($called, $writer, $done);
    # The writer is the app's; only a weak reference here, so that dropping
    # it is noticed (P19).
    my $responder = sub {
        die "the PSGI responder was called twice (P17)\n" if $called++;
        die "the PSGI responder was called after the response ended\n" if $done;
        my $res = shift;
        Bridge::Runner::Response::error(protocol => 'the responder needs an array reference of 2 or 3 elements')
          unless ref $res eq 'ARRAY' && (@$res == 2 || @$res == 3);
        if (@$res == 3) {
            _respond($resp, $res);
            return;
        }
        $resp->set_head($res->[0], $res->[1]);
        $resp->start_stream or die Bridge::Runner::Disconnected->new;
        my $w = Bridge::Runner::Writer->new($resp);
        $writer = $w;
        Scalar::Util::weaken($writer);
        return $w;
    };
    my $ok = eval { $code->($responder); 1 };
    my $err = $@;
    $done = 1;
    if (!$ok) {
        die $err;
    }
    if (!$called) {
        # No event loop could call it later (psgi.nonblocking is false).
        Bridge::Runner::Response::error(protocol => 'the delayed response returned without calling the responder (P19)');
    }
    if ($called && $resp->started && !$resp->ended && !$resp->gone) {
        # Dropped without close (P19), or kept past the return: there is no
        # later for a blocking server, so the response ends here, cleanly.
        Bridge::Runner::Log::log(warn => ($writer ? 'the app returned without closing its PSGI writer'
                : 'PSGI writer dropped without close') . ': response ended');
        $writer ? $writer->close : $resp->finish;
    }
}

# psgix.cleanup.handlers (X3): after the response is sent or aborted, in
# push order, each with $env; exceptions are logged and ignored.
sub _cleanup {
    my $env      = shift;
    my $handlers = $env->{'psgix.cleanup.handlers'};
    return unless ref $handlers eq 'ARRAY';
    for (my $i = 0; $i < @$handlers; $i++) {    # a handler may push more
        my $h = $handlers->[$i];
        my $ok = eval { $h->($env); 1 };
        next if $ok;
        my ($kind, $message, $trace) = Bridge::Runner::Error::describe($@);
        Bridge::Runner::Log::log(error => "exception in a psgix.cleanup handler: $message", traceback => $trace);
    }
}

package Bridge::Runner::Writer;
# The writer of a streaming response (P18): write sends one frame at once,
# close ends the response. poll_cb is gone in PSGI 1.1.

sub new {
    my ($class, $resp) = @_;
    return bless { resp => $resp, closed => 0 }, $class;
}

sub closed { $_[0]{closed} }

sub write {
    my ($self, $data) = @_;
    die "write() on a closed PSGI writer\n" if $self->{closed};
    my $resp = $self->{resp};
    die Bridge::Runner::Disconnected->new if $resp->gone;
    die "write() after the response ended\n" if $resp->ended;
    $resp->write($data) or die Bridge::Runner::Disconnected->new;
    return 1;
}

sub close {
    my $self = shift;
    return if $self->{closed};
    $self->{closed} = 1;
    my $resp = $self->{resp};
    return if $resp->gone || $resp->ended;
    $resp->finish;
}

# Nothing is sent from here: a writer also goes out of scope while the
# app's exception unwinds, and then the response must be aborted, not ended.
# _delayed ends a dropped writer's response once the app has returned.
sub DESTROY {
    my $self = shift;
    $self->{resp}{writer_dropped} = 1 unless $self->{closed};
}

1;
