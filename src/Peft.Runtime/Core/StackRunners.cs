using System.Runtime.CompilerServices;
using static TorchSharp.torch;

namespace Peft;

/// <summary>
/// One block of a transformer stack as a function of the hidden state alone: the stack's forward binds every other argument
/// the block takes (attention masks, rotary tables, a key/value cache) in the closure.
/// </summary>
/// <param name="index">The block's index, bottom first.</param>
/// <param name="hidden">The block's input hidden states.</param>
/// <returns>The block's output hidden states (same shape).</returns>
public delegate Tensor BlockForward(int index, Tensor hidden);

/// <summary>What one forward of a stack hands its <see cref="IStackRunner"/>.</summary>
public sealed class StackCall
{
    /// <summary>Creates the call.</summary>
    /// <param name="block">The blocks as functions of the hidden state.</param>
    /// <param name="blockCount">How many blocks the stack has.</param>
    /// <param name="gradientFreeBlocks">The stack's gradient-free prefix (<see cref="TransformerStacks.GradientFreeBlocks"/>).</param>
    /// <param name="recomputable">Whether running a block a second time (in the backward) gives the same result and changes
    /// nothing: false while a key/value cache is passed, since every run appends to it.</param>
    /// <param name="context">Every tensor the <paramref name="block"/> closure reads besides the hidden state (masks, rotary
    /// tables), so that a runner that re-runs blocks after the forward returned can keep them alive past the forward's
    /// dispose scope.</param>
    public StackCall(BlockForward block, int blockCount, int gradientFreeBlocks, bool recomputable, IReadOnlyList<Tensor> context)
    {
        ArgumentNullException.ThrowIfNull(block);
        ArgumentNullException.ThrowIfNull(context);
        Block = block;
        BlockCount = blockCount;
        GradientFreeBlocks = gradientFreeBlocks;
        Recomputable = recomputable;
        Context = context;
    }

    /// <summary>The blocks as functions of the hidden state.</summary>
    public BlockForward Block { get; }

    /// <summary>How many blocks the stack has.</summary>
    public int BlockCount { get; }

    /// <summary>How many bottom blocks need no autograd graph.</summary>
    public int GradientFreeBlocks { get; }

    /// <summary>Whether a block may be run again in the backward (no key/value cache).</summary>
    public bool Recomputable { get; }

    /// <summary>The tensors the block closure reads besides the hidden state.</summary>
    public IReadOnlyList<Tensor> Context { get; }
}

/// <summary>
/// Something that takes over how a stack runs its blocks (MEFT's reversible stack): given the first block's input and the
/// blocks as functions (<see cref="StackCall"/>), it returns what the stack's final norm or pooling reads. Attached to a
/// stack with <see cref="StackRunners.Attach"/>; while none is attached, or the attached one is not <see cref="Active"/>, the
/// stack runs its blocks one after the other as always.
/// </summary>
public interface IStackRunner
{
    /// <summary>The adapter the runner belongs to (model-level adapter operations find it by this name).</summary>
    string AdapterName { get; }

    /// <summary>Whether the runner runs; an inactive runner leaves the stack to its plain loop (the base model).</summary>
    bool Active { get; }

    /// <summary>Runs the blocks.</summary>
    /// <param name="hidden">The first block's input.</param>
    /// <param name="call">The blocks and this forward's facts.</param>
    /// <returns>The stack's output hidden states, shaped as <paramref name="hidden"/>.</returns>
    Tensor Run(Tensor hidden, StackCall call);

    /// <summary>Removes everything the runner added to the model (its modules); called when its adapter is deleted, after
    /// which the runner is detached.</summary>
    void Remove();
}

/// <summary>
/// The block loop every <see cref="ITransformerStack"/> runs (<see cref="RunBlocks"/>), and the runners attached to stacks.
/// A stack's forward computes its embeddings, then calls <c>this.RunBlocks(x, frozen, (i, h) =&gt; blocks[i].Forward(h, …),
/// recomputable, context)</c> instead of looping itself (docs/ARCHITECTURE.md, "Transformer stacks").
/// </summary>
public static class StackRunners
{
    private static readonly ConditionalWeakTable<ITransformerStack, IStackRunner> s_runners = new();

    /// <summary>Runs the stack's blocks: through its attached, active runner, or one after the other with the bottom
    /// <paramref name="gradientFreeBlocks"/> under <c>no_grad</c>.</summary>
    /// <param name="stack">The stack.</param>
    /// <param name="hidden">The first block's input.</param>
    /// <param name="gradientFreeBlocks">The gradient-free prefix (<see cref="TransformerStacks.GradientFreeBlocks"/>).</param>
    /// <param name="block">Block <c>i</c> as a function of its input, every other argument bound.</param>
    /// <param name="recomputable">False when running a block twice would change state (a key/value cache is passed).</param>
    /// <param name="context">The tensors <paramref name="block"/> reads besides the hidden state.</param>
    /// <returns>The last block's output.</returns>
    public static Tensor RunBlocks(this ITransformerStack stack, Tensor hidden, int gradientFreeBlocks, BlockForward block, bool recomputable = true, params Tensor?[] context)
    {
        ArgumentNullException.ThrowIfNull(stack);
        ArgumentNullException.ThrowIfNull(hidden);
        ArgumentNullException.ThrowIfNull(block);
        int count = stack.Blocks.Count;
        if (s_runners.TryGetValue(stack, out var runner) && runner.Active)
        {
            var kept = context.Where(t => t is not null).Select(t => t!).ToArray();
            return runner.Run(hidden, new StackCall(block, count, gradientFreeBlocks, recomputable, kept));
        }

        for (int i = 0; i < count; i++)
        {
            using (TransformerStacks.NoGradPrefix(gradientFreeBlocks - i)) hidden = block(i, hidden);
        }

        return hidden;
    }

    /// <summary>Attaches <paramref name="runner"/> to <paramref name="stack"/>.</summary>
    /// <param name="stack">The stack.</param>
    /// <param name="runner">The runner.</param>
    /// <exception cref="PeftConfigurationException">A runner is attached already (the message names its adapter).</exception>
    public static void Attach(ITransformerStack stack, IStackRunner runner)
    {
        ArgumentNullException.ThrowIfNull(stack);
        ArgumentNullException.ThrowIfNull(runner);
        if (s_runners.TryGetValue(stack, out var existing))
        {
            throw new PeftConfigurationException(
                $"The stack already runs its blocks through adapter '{existing.AdapterName}' ({existing.GetType().Name}); a stack has one runner. " +
                $"Delete that adapter first (model.DeleteAdapter(\"{existing.AdapterName}\")).", null, runner.AdapterName);
        }

        s_runners.Add(stack, runner);
    }

    /// <summary>The runner attached to <paramref name="stack"/>, or null.</summary>
    /// <param name="stack">The stack.</param>
    /// <returns>The runner or null.</returns>
    public static IStackRunner? Of(ITransformerStack stack)
    {
        ArgumentNullException.ThrowIfNull(stack);
        return s_runners.TryGetValue(stack, out var runner) ? runner : null;
    }

    /// <summary>Detaches the runner of <paramref name="stack"/> belonging to <paramref name="adapterName"/> (after its
    /// <see cref="IStackRunner.Remove"/>); nothing happens when the stack has none of that name.</summary>
    /// <param name="stack">The stack.</param>
    /// <param name="adapterName">The adapter.</param>
    /// <returns>True when a runner was removed.</returns>
    public static bool Remove(ITransformerStack stack, string adapterName)
    {
        ArgumentNullException.ThrowIfNull(stack);
        if (!s_runners.TryGetValue(stack, out var runner) || runner.AdapterName != adapterName)
        {
            return false;
        }

        runner.Remove();
        s_runners.Remove(stack);
        return true;
    }

    /// <summary>Every stack of the tree with an attached runner.</summary>
    /// <param name="root">The model.</param>
    /// <returns>(stack, runner) pairs.</returns>
    public static IEnumerable<(ITransformerStack Stack, IStackRunner Runner)> Runners(this nn.Module root)
    {
        ArgumentNullException.ThrowIfNull(root);
        foreach (var node in ModuleTree.Walk(root))
        {
            if (node.Module is ITransformerStack stack && s_runners.TryGetValue(stack, out var runner)) yield return (stack, runner);
        }
    }
}
