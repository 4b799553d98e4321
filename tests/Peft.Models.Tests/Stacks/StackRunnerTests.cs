using static TorchSharp.torch;

namespace Peft.Models.Tests.Stacks;

/// <summary>
/// Every family runs its blocks through <see cref="StackRunners.RunBlocks"/>: an attached runner gets each block as a function
/// of the hidden state with the forward's other tensors listed, and what it returns is what the stack's head reads.
/// </summary>
public sealed class StackRunnerTests
{
    public static IEnumerable<object[]> Families => StackFamilies.All;

    [Theory]
    [MemberData(nameof(Families))]
    public void ARunnerSeesEveryBlockAndWhatItReturnsIsTheStacksOutput(string family)
    {
        using var reference = StackFamilies.Create(family);
        using var model = StackFamilies.Create(family);
        var (_, stack) = TransformerStacks.Find(model);
        var runner = new Recording();
        StackRunners.Attach(stack, runner);

        // A runner that loops itself gives the same output, bit for bit.
        using var y0 = StackFamilies.Run(family, reference);
        using (var y1 = StackFamilies.Run(family, model)) Assert.True(y0.eq(y1).all().item<bool>(), $"{family}: the plain runner changed the output");
        Assert.Equal(stack.Blocks.Count, runner.Calls.Count);
        Assert.Equal(Enumerable.Range(0, stack.Blocks.Count), runner.Calls);
        Assert.True(runner.Recomputable);
        Assert.Equal(family switch { "llama" => 2, "gpt2" => 0, "bert" => 0, _ => 1 }, runner.ContextCount);   // BERT's run has no padding mask

        // Doubling the last hidden state changes the output; an inactive runner leaves the plain loop.
        runner.Scale = 2.0;
        using (var y2 = StackFamilies.Run(family, model)) Assert.False(y0.eq(y2).all().item<bool>(), $"{family}: the runner's output was not used");
        runner.IsActive = false;
        using (var y3 = StackFamilies.Run(family, model)) Assert.True(y0.eq(y3).all().item<bool>());

        // One runner per stack; removing it calls Remove and leaves the plain loop.
        var error = Assert.Throws<PeftConfigurationException>(() => StackRunners.Attach(stack, new Recording()));
        Assert.Contains("'recording'", error.Message, StringComparison.Ordinal);
        Assert.False(StackRunners.Remove(stack, "other"));
        Assert.True(StackRunners.Remove(stack, "recording"));
        Assert.True(runner.Removed);
        Assert.Null(StackRunners.Of(stack));
    }

    private sealed class Recording : IStackRunner
    {
        public List<int> Calls { get; } = [];

        public bool Recomputable { get; private set; }

        public int ContextCount { get; private set; }

        public double Scale { get; set; } = 1.0;

        public bool IsActive { get; set; } = true;

        public bool Removed { get; private set; }

        public string AdapterName => "recording";

        public bool Active => IsActive;

        public Tensor Run(Tensor hidden, StackCall call)
        {
            Calls.Clear();
            Recomputable = call.Recomputable;
            ContextCount = call.Context.Count;
            for (int i = 0; i < call.BlockCount; i++)
            {
                Calls.Add(i);
                hidden = call.Block(i, hidden);
            }

            return Scale == 1.0 ? hidden : hidden * Scale;
        }

        public void Remove() => Removed = true;
    }
}
