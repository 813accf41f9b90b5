# frozen_string_literal: true
# Single entry point: ruby -Iruby/lib -Iruby/test ruby/test/run.rb
$LOAD_PATH.unshift(File.expand_path('../lib', __dir__))
$LOAD_PATH.unshift(__dir__)
Dir[File.join(__dir__, '*_test.rb')].sort.each { |f| require f }
